import type { Logger } from 'pino';
import { map, shareReplay } from 'rxjs';
import type { Observable } from 'rxjs';
import { formatDiagnostic } from '../../errors.js';
import { DEFAULT_FILE_LIMITS, FileSubscription, IstioFileStores, absolutePattern } from '../../istio/file-store.js';
import type { RegistryError, RegistryState } from '../../model/registry-state.js';
import type { Registry } from '../registry.js';
import { servicesFromFiles } from './service-entries.js';

export interface FileRegistryConfig {
  readonly name: string;
  /** Files or globs; relative ones resolve against `baseDir`. */
  readonly paths: readonly string[];
  readonly baseDir: string;
}

/** Istio ServiceEntry and WorkloadEntry documents from the shared file stores. */
export class FileRegistry implements Registry {
  readonly kind = 'file' as const;
  readonly name: string;
  readonly states: Observable<RegistryState>;
  private readonly files: FileSubscription;

  constructor(config: FileRegistryConfig, log: Logger, stores = new IstioFileStores(DEFAULT_FILE_LIMITS, log)) {
    this.name = config.name;
    this.files = new FileSubscription(stores, config.paths.map((p) => absolutePattern(p, config.baseDir)));
    // For operators: the latest rejected file, kept after it is fixed, and when the files were last read.
    let lastError: RegistryError | undefined;
    let errorsSeen = new Set<string>();
    this.states = this.files.contents.pipe(
      map(({ accepted, diagnostics: fileDiagnostics }): RegistryState => {
        const { services, diagnostics } = servicesFromFiles(accepted, this.name);
        for (const d of diagnostics) log.warn({ file: d.source, document: d.document, field: d.field }, formatDiagnostic(d));
        const errors = fileDiagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic);
        const fresh = errors.find((e) => !errorsSeen.has(e));
        if (fresh !== undefined) lastError = { message: fresh, at: new Date() };
        errorsSeen = new Set(errors);
        return {
          registry: this.name,
          kind: this.kind,
          services,
          synced: true,
          stale: false,
          diagnostics: [...fileDiagnostics, ...diagnostics],
          lastSyncAt: new Date(),
          ...(lastError === undefined ? {} : { lastError }),
        };
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
