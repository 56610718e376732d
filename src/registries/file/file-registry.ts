import type { Logger } from 'pino';
import { BehaviorSubject, filter } from 'rxjs';
import type { Observable } from 'rxjs';
import { formatDiagnostic } from '../../errors.js';
import type { RegistryError, RegistryState } from '../../model/registry-state.js';
import { WatchedFiles } from '../../policy/files/watched-files.js';
import { SERVICE_KIND_HANDLERS } from '../../policy/istio/service-entry.js';
import type { Registry } from '../registry.js';
import { servicesFromFiles } from './service-entries.js';

export interface FileRegistryConfig {
  readonly name: string;
  /** Files or globs; relative ones resolve against `baseDir`. */
  readonly paths: readonly string[];
  readonly baseDir: string;
}

/** Istio ServiceEntry and WorkloadEntry documents read from watched files. */
export class FileRegistry implements Registry {
  readonly kind = 'file' as const;
  readonly name: string;
  private readonly subject = new BehaviorSubject<RegistryState | undefined>(undefined);
  private readonly files: WatchedFiles;
  /** The latest rejected file, for operators; kept after the file is fixed. */
  private lastError: RegistryError | undefined;
  private errorsSeen = '';

  constructor(config: FileRegistryConfig, private readonly log: Logger) {
    this.name = config.name;
    this.files = new WatchedFiles(
      { paths: config.paths, baseDir: config.baseDir, handlers: SERVICE_KIND_HANDLERS, onChange: () => this.publish() },
      log,
    );
  }

  get states(): Observable<RegistryState> {
    return this.subject.pipe(filter((s): s is RegistryState => s !== undefined));
  }

  start(): Promise<void> {
    return this.files.start();
  }

  async stop(): Promise<void> {
    await this.files.stop();
    this.subject.complete();
  }

  private publish(): void {
    const { services, diagnostics } = servicesFromFiles(this.files.accepted, this.name);
    for (const d of diagnostics) this.log.warn({ file: d.source, document: d.document, field: d.field }, formatDiagnostic(d));
    const errors = this.files.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic);
    const fresh = errors.filter((e) => !this.errorsSeen.includes(`${e}\n`));
    if (fresh.length > 0) this.lastError = { message: fresh[0]!, at: new Date() };
    this.errorsSeen = errors.map((e) => `${e}\n`).join('');
    this.subject.next({
      registry: this.name,
      kind: this.kind,
      services,
      synced: true,
      stale: false,
      diagnostics: [...this.files.diagnostics, ...diagnostics],
      lastSyncAt: new Date(),
      ...(this.lastError === undefined ? {} : { lastError: this.lastError }),
    });
  }
}
