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
import { hasErrors, parseIstioText } from '../istio/documents.js';
import type { KindHandlers, ParsedFile } from '../istio/documents.js';

export interface WatchedFilesOptions {
  /** Files or globs; relative ones resolve against `baseDir`. */
  readonly paths: readonly string[];
  readonly baseDir: string;
  readonly handlers: KindHandlers;
  /**
   * Checks that hold across files (a route naming a subset declared elsewhere):
   * given a file that passed its own checks and what the others hold, the
   * errors that should still reject it.
   */
  readonly crossCheck?: (path: string, candidate: ParsedFile, others: ReadonlyMap<string, ParsedFile>) => Diagnostic[];
}

/** What the watched files hold at one moment. */
export interface FileContents {
  /** The accepted content of every file, by path. */
  readonly accepted: ReadonlyMap<string, ParsedFile>;
  /** Errors of rejected files, warnings of accepted ones. */
  readonly diagnostics: readonly Diagnostic[];
}

/**
 * Istio YAML files on disk, watched. Each file is accepted or rejected whole: a
 * file with errors keeps its previous content in force, so a typo never
 * withdraws what is being served. Shared by the file registry and the policy reader.
 */
export class WatchedFiles {
  private readonly acceptedFiles = new Map<string, ParsedFile>();
  private readonly fileDiagnostics = new Map<string, readonly Diagnostic[]>();
  private readonly matchers: ((path: string) => boolean)[];
  private readonly roots: string[];
  private watcher: FSWatcher | undefined;
  private scanned = false;
  private readonly subject = new BehaviorSubject<FileContents | undefined>(undefined);
  /** Serializes reads so a slow read of an older version can never overwrite a newer one. */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly options: WatchedFilesOptions,
    private readonly log: Logger,
  ) {
    const patterns = options.paths.map((p) => (isAbsolute(p) ? p : resolve(options.baseDir, p)));
    this.matchers = patterns.map((p) => picomatch(p, { dot: true }));
    this.roots = [...new Set(patterns.map((p) => picomatch.scan(p).base || p))];
  }

  /** The files' contents after the first scan and after every accepted, rejected or removed file. */
  get contents(): Observable<FileContents> {
    return this.subject.pipe(filter((c): c is FileContents => c !== undefined));
  }

  /** Watches and reads every matching file; resolves after the first scan. */
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
    this.scanned = true;
    if (this.acceptedFiles.size === 0) this.log.warn({ paths: this.options.paths }, 'no files match the configured paths yet');
    this.publish();
  }

  async stop(): Promise<void> {
    await this.watcher?.close();
    await this.queue;
    this.subject.complete();
  }

  private publish(): void {
    this.subject.next({ accepted: new Map(this.acceptedFiles), diagnostics: [...this.fileDiagnostics.values()].flat() });
  }

  private matches(path: string): boolean {
    return this.matchers.some((m) => m(path));
  }

  private enqueue(task: () => Promise<void>): void {
    this.queue = this.queue.then(task).then(
      () => {
        if (this.scanned) this.publish();
      },
      (error: unknown) => this.log.error({ err: error }, 'file update failed'),
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
      // Editors and `>` redirections truncate before they write; deleting the file is how to remove its content.
      this.reject(path, [{ severity: 'error', source: path, message: 'file is empty; delete the file to remove what it declared' }]);
      return;
    }
    const parsed = parseIstioText(path, text, this.options.handlers);
    if (hasErrors(parsed.diagnostics)) {
      this.reject(path, parsed.diagnostics);
      return;
    }
    const others = new Map([...this.acceptedFiles].filter(([other]) => other !== path));
    const crossErrors = this.options.crossCheck?.(path, parsed, others) ?? [];
    if (hasErrors(crossErrors)) {
      this.reject(path, [...crossErrors, ...parsed.diagnostics.filter((d) => d.severity === 'warning')]);
      return;
    }
    for (const d of parsed.diagnostics) this.log.warn({ file: path, document: d.document, field: d.field }, formatDiagnostic(d));
    this.acceptedFiles.set(path, parsed);
    this.fileDiagnostics.set(path, parsed.diagnostics);
    this.log.info({ file: path, documents: parsed.documents.length }, 'file accepted');
  }

  private reject(path: string, diagnostics: readonly Diagnostic[]): void {
    const kept = this.acceptedFiles.get(path)?.documents.length ?? 0;
    for (const d of diagnostics) {
      this.log.error({ file: path, document: d.document, field: d.field, keptDocuments: kept }, formatDiagnostic(d));
    }
    this.log.error(
      { file: path, keptDocuments: kept },
      this.acceptedFiles.has(path) ? 'file rejected; its previous content stays in force' : 'file rejected; nothing from it is used',
    );
    this.fileDiagnostics.set(path, diagnostics);
  }

  private forget(path: string): void {
    if (this.acceptedFiles.delete(path)) this.log.info({ file: path }, 'file removed; what it declared is withdrawn');
    this.fileDiagnostics.delete(path);
  }
}
