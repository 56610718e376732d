import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { watch } from 'chokidar';
import type { FSWatcher } from 'chokidar';
import picomatch from 'picomatch';
import type { Logger } from 'pino';
import { BehaviorSubject, filter } from 'rxjs';
import type { Observable } from 'rxjs';
import { formatDiagnostic } from '../../errors.js';
import type { Diagnostic } from '../../errors.js';
import type { RegistryState } from '../../model/registry-state.js';
import { hasErrors, parseIstioText } from '../../policy/istio/documents.js';
import type { ParsedFile } from '../../policy/istio/documents.js';
import { SERVICE_KIND_HANDLERS } from '../../policy/istio/service-entry.js';
import type { Registry } from '../registry.js';
import { servicesFromFiles } from './service-entries.js';

export interface FileRegistryConfig {
  readonly name: string;
  /** Files or globs; relative ones resolve against `baseDir`. */
  readonly paths: readonly string[];
  readonly baseDir: string;
}

/**
 * Istio ServiceEntry and WorkloadEntry documents read from files. Each file is
 * accepted or rejected whole: a file with errors keeps its previous content in
 * force, so a typo never withdraws endpoints that are being served.
 */
export class FileRegistry implements Registry {
  readonly kind = 'file' as const;
  readonly name: string;
  private readonly accepted = new Map<string, ParsedFile>();
  private readonly fileDiagnostics = new Map<string, readonly Diagnostic[]>();
  private readonly subject: BehaviorSubject<RegistryState | undefined>;
  private readonly matchers: ((path: string) => boolean)[];
  private readonly roots: string[];
  private watcher: FSWatcher | undefined;
  private synced = false;
  /** Serializes reads so a slow read of an older version can never overwrite a newer one. */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly config: FileRegistryConfig,
    private readonly log: Logger,
  ) {
    this.name = config.name;
    this.subject = new BehaviorSubject<RegistryState | undefined>(undefined);
    const patterns = config.paths.map((p) => (isAbsolute(p) ? p : resolve(config.baseDir, p)));
    this.matchers = patterns.map((p) => picomatch(p, { dot: true }));
    this.roots = [...new Set(patterns.map((p) => picomatch.scan(p).base || p))];
  }

  get states(): Observable<RegistryState> {
    return this.subject.pipe(filter((s): s is RegistryState => s !== undefined));
  }

  async start(): Promise<void> {
    const watcher = watch(this.roots, {
      ignoreInitial: false,
      // Keeps a half-written file from being read while an editor or `cp` is writing it.
      awaitWriteFinish: { stabilityThreshold: 60, pollInterval: 20 },
      ignored: (path, stats) => stats?.isFile() === true && !this.matches(path),
    });
    this.watcher = watcher;
    watcher.on('add', (path) => this.enqueue(() => this.read(path)));
    watcher.on('change', (path) => this.enqueue(() => this.read(path)));
    watcher.on('unlink', (path) => this.enqueue(async () => this.forget(path)));
    watcher.on('error', (error) => this.log.error({ err: error }, 'file watcher failed'));
    await new Promise<void>((ready) => watcher.once('ready', () => ready()));
    await this.queue;
    this.synced = true;
    if (this.accepted.size === 0) this.log.warn({ paths: this.config.paths }, 'no files match the configured paths yet');
    this.publish();
  }

  async stop(): Promise<void> {
    await this.watcher?.close();
    await this.queue;
    this.subject.complete();
  }

  private matches(path: string): boolean {
    return this.matchers.some((m) => m(path));
  }

  private enqueue(task: () => Promise<void>): void {
    this.queue = this.queue.then(task).then(
      () => {
        if (this.synced) this.publish();
      },
      (error: unknown) => this.log.error({ err: error }, 'file registry update failed'),
    );
  }

  private async read(path: string): Promise<void> {
    if (!this.matches(path)) return;
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      this.reject(path, [{ severity: 'error', source: path, message: `cannot read file: ${(error as Error).message}` }]);
      return;
    }
    if (text.trim() === '') {
      // Editors and `>` redirections truncate before they write; deleting the file is how to remove its services.
      this.reject(path, [
        { severity: 'error', source: path, message: 'file is empty; delete the file to remove what it declared' },
      ]);
      return;
    }
    const parsed = parseIstioText(path, text, SERVICE_KIND_HANDLERS);
    if (hasErrors(parsed.diagnostics)) {
      this.reject(path, parsed.diagnostics);
      return;
    }
    for (const d of parsed.diagnostics) this.log.warn({ file: path, document: d.document, field: d.field }, formatDiagnostic(d));
    this.accepted.set(path, parsed);
    this.fileDiagnostics.set(path, parsed.diagnostics);
    this.log.info({ file: path, documents: parsed.documents.length }, 'file accepted');
  }

  private reject(path: string, diagnostics: readonly Diagnostic[]): void {
    const kept = this.accepted.get(path);
    for (const d of diagnostics) {
      this.log.error(
        { file: path, document: d.document, field: d.field, keptDocuments: kept?.documents.length ?? 0 },
        formatDiagnostic(d),
      );
    }
    this.log.error(
      { file: path, keptDocuments: kept?.documents.length ?? 0 },
      kept === undefined ? 'file rejected; nothing from it is served' : 'file rejected; its previous content stays in force',
    );
    this.fileDiagnostics.set(path, diagnostics);
  }

  private forget(path: string): void {
    if (this.accepted.delete(path)) this.log.info({ file: path }, 'file removed; its services are withdrawn');
    this.fileDiagnostics.delete(path);
  }

  private publish(): void {
    const { services, diagnostics } = servicesFromFiles(this.accepted, this.name);
    for (const d of diagnostics) this.log.warn({ file: d.source, document: d.document, field: d.field }, formatDiagnostic(d));
    this.subject.next({
      registry: this.name,
      kind: this.kind,
      services,
      synced: true,
      stale: false,
      diagnostics: [...[...this.fileDiagnostics.values()].flat(), ...diagnostics],
    });
  }
}
