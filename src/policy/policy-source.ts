import type { Logger } from 'pino';
import { BehaviorSubject, filter } from 'rxjs';
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
  private readonly subject = new BehaviorSubject<PolicySet | undefined>(undefined);
  private readonly files: WatchedFiles;

  constructor(config: PolicySourceConfig, private readonly log: Logger) {
    this.files = new WatchedFiles(
      {
        paths: config.paths,
        baseDir: config.baseDir,
        handlers: POLICY_KIND_HANDLERS,
        onChange: () => this.publish(),
        crossCheck: (_path, candidate, others) => checkSubsetReferences(candidate, others),
      },
      log,
    );
  }

  get policies(): Observable<PolicySet> {
    return this.subject.pipe(filter((p): p is PolicySet => p !== undefined));
  }

  start(): Promise<void> {
    return this.files.start();
  }

  async stop(): Promise<void> {
    await this.files.stop();
    this.subject.complete();
  }

  private publish(): void {
    const set = policyFromFiles(this.files.accepted);
    for (const d of set.diagnostics) this.log.warn({ file: d.source, document: d.document, field: d.field }, formatDiagnostic(d));
    this.subject.next({ ...set, diagnostics: [...this.files.diagnostics, ...set.diagnostics] });
  }
}
