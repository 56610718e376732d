import type { Logger } from 'pino';
import { map, shareReplay } from 'rxjs';
import type { Observable } from 'rxjs';
import { formatDiagnostic } from '../errors.js';
import { DEFAULT_FILE_LIMITS, FileSubscription, IstioFileStores, absolutePattern } from './file-store.js';
import { policyFromFiles } from './policy-set.js';
import type { PolicySet } from './policy-set.js';

export interface PolicySourceConfig {
  readonly paths: readonly string[];
  readonly baseDir: string;
}

/** VirtualService and DestinationRule documents from the shared file stores, as whole policy sets. */
export class PolicySource {
  readonly policies: Observable<PolicySet>;
  private readonly files: FileSubscription;

  constructor(config: PolicySourceConfig, log: Logger, stores = new IstioFileStores(DEFAULT_FILE_LIMITS, log)) {
    this.files = new FileSubscription(stores, config.paths.map((p) => absolutePattern(p, config.baseDir)));
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
