import type { Logger } from 'pino';
import { map, shareReplay } from 'rxjs';
import type { Observable } from 'rxjs';
import { formatDiagnostic } from '../errors.js';
import { WatchedFiles } from './files/watched-files.js';
import { POLICY_KIND_HANDLERS, checkSubsetReferences, policyFromFiles } from './policy-set.js';
import type { PolicySet } from './policy-set.js';

export interface PolicySourceConfig {
  readonly paths: readonly string[];
  readonly baseDir: string;
}

/** VirtualService and DestinationRule documents from watched files, as whole policy sets. */
export class PolicySource {
  readonly policies: Observable<PolicySet>;
  private readonly files: WatchedFiles;

  constructor(config: PolicySourceConfig, log: Logger) {
    this.files = new WatchedFiles(
      {
        paths: config.paths,
        baseDir: config.baseDir,
        handlers: POLICY_KIND_HANDLERS,
        crossCheck: (_path, candidate, others) => checkSubsetReferences(candidate, others),
      },
      log,
    );
    this.policies = this.files.contents.pipe(
      map(({ accepted, diagnostics }): PolicySet => {
        const set = policyFromFiles(accepted);
        for (const d of set.diagnostics) log.warn({ file: d.source, document: d.document, field: d.field }, formatDiagnostic(d));
        return { ...set, diagnostics: [...diagnostics, ...set.diagnostics] };
      }),
      shareReplay({ bufferSize: 1, refCount: false }),
    );
  }

  start(): Promise<void> {
    return this.files.start();
  }

  stop(): Promise<void> {
    return this.files.stop();
  }
}
