import { open, realpath } from 'node:fs/promises';
import { isAbsolute, relative, resolve } from 'node:path';
import { watch } from 'chokidar';
import type { FSWatcher } from 'chokidar';
import picomatch from 'picomatch';
import type { Logger } from 'pino';
import { BehaviorSubject, ReplaySubject, combineLatest, filter, map, of, switchMap, takeUntil } from 'rxjs';
import type { Observable } from 'rxjs';
import { formatDiagnostic } from '../errors.js';
import type { Diagnostic } from '../errors.js';
import { hasErrors, parseIstioText } from './documents.js';
import type { KindHandlers, ParsedFile } from './documents.js';
import { ISTIO_KIND_HANDLERS } from './kinds.js';

/** Large enough for thousands of documents; small enough that one file cannot hold the event loop for long. */
export const DEFAULT_FILE_BYTES = 4 * 1024 * 1024;

export interface FileStoreLimits {
  /** Files larger than this are rejected before they are parsed. */
  readonly fileBytes: number;
  /**
   * Files whose real path (symbolic links followed) is not under this
   * directory are rejected, named in the diagnostic (see `files.allowOutside`).
   */
  readonly confineTo?: string;
}

export const DEFAULT_FILE_LIMITS: FileStoreLimits = Object.freeze({ fileBytes: DEFAULT_FILE_BYTES });

/** What the watched files hold at one moment. */
export interface FileContents {
  /** The accepted content of every file, by path. */
  readonly accepted: ReadonlyMap<string, ParsedFile>;
  /** Errors of rejected files, warnings of accepted ones. */
  readonly diagnostics: readonly Diagnostic[];
}

export const NO_FILES: FileContents = Object.freeze({ accepted: new Map(), diagnostics: [] });

/** A file or glob made absolute against the directory of the config that named it. */
export function absolutePattern(path: string, baseDir: string): string {
  return isAbsolute(path) ? path : resolve(baseDir, path);
}

/** Whether a file is one of `patterns` (absolute files or globs). */
export function pathMatcher(patterns: readonly string[]): (path: string) => boolean {
  const matchers = patterns.map((p) => picomatch(p, { dot: true }));
  return (path) => matchers.some((m) => m(path));
}

/**
 * Istio YAML files matching one pattern, watched. Each file is read and parsed
 * once, for every kind, and accepted or rejected whole: a file with errors
 * keeps its previous content in force, so a typo never withdraws what is being
 * served. Whether documents fit together across files is not decided here but
 * on the whole routing model, so the order files are read in cannot matter.
 */
export class IstioFileStore {
  private readonly acceptedFiles = new Map<string, ParsedFile>();
  private readonly fileDiagnostics = new Map<string, readonly Diagnostic[]>();
  private readonly matches: (path: string) => boolean;
  private readonly roots: string[];
  private watcher: FSWatcher | undefined;
  private scanned = false;
  private readonly subject = new BehaviorSubject<FileContents | undefined>(undefined);
  /** Serializes reads so a slow read of an older version can never overwrite a newer one. */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly patterns: readonly string[],
    private readonly limits: FileStoreLimits,
    private readonly log: Logger,
    private readonly handlers: KindHandlers = ISTIO_KIND_HANDLERS,
  ) {
    this.matches = pathMatcher(patterns);
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
    if (this.acceptedFiles.size === 0) this.log.warn({ paths: this.patterns }, 'no files match the configured paths yet');
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
    if (this.limits.confineTo !== undefined) {
      const problem = await escapesFrom(path, this.limits.confineTo);
      if (problem !== undefined) {
        this.reject(path, [{ severity: 'error', source: path, message: problem }]);
        return;
      }
    }
    const text = await readBounded(path, this.limits.fileBytes);
    if (typeof text !== 'string') {
      this.reject(path, [{ severity: 'error', source: path, message: text.problem }]);
      return;
    }
    if (text.trim() === '') {
      // Editors and `>` redirections truncate before they write; deleting the file is how to remove its content.
      this.reject(path, [{ severity: 'error', source: path, message: 'file is empty; delete the file to remove what it declared' }]);
      return;
    }
    const parsed = parseIstioText(path, text, this.handlers);
    if (hasErrors(parsed.diagnostics)) {
      this.reject(path, parsed.diagnostics);
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

/** Whether `path` is `dir` or inside it (both absolute, normalized). */
export function isInside(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/**
 * Why `path` may not be read when files are confined to `root`: its real
 * path (every symbolic link followed, the root's own included) lies outside
 * the root's. Undefined when it may be read, or does not exist (the read
 * says so).
 */
async function escapesFrom(path: string, root: string): Promise<string | undefined> {
  let real: string;
  let realRoot: string;
  try {
    [real, realRoot] = await Promise.all([realpath(path), realpath(root)]);
  } catch {
    return undefined;
  }
  if (isInside(real, realRoot)) return undefined;
  return `file resolves to ${real} (through a symbolic link), outside the config directory ${root}; nothing in it is read (files.allowOutside: true allows it)`;
}

/**
 * Reads at most `limit` bytes: the size is checked before reading and again
 * while reading, since the file may grow in between.
 */
export async function readBounded(path: string, limit: number): Promise<string | { problem: string }> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    return { problem: `cannot read file: ${(error as Error).message}` };
  }
  const tooLarge = (size: number | string) => ({
    problem: `file is ${size} bytes, over the limit of ${limit} (limits.fileBytes); nothing in it is read`,
  });
  try {
    const { size } = await handle.stat();
    if (size > limit) return tooLarge(size);
    // Sized for what stat saw, grown (never past limit + 1) if the file grew since.
    let buffer = Buffer.alloc(Math.min(limit + 1, size + 1));
    let length = 0;
    for (;;) {
      if (length === buffer.length) {
        if (length > limit) return tooLarge(`more than ${limit}`);
        const grown = Buffer.alloc(Math.min(limit + 1, buffer.length * 2));
        buffer.copy(grown, 0, 0, length);
        buffer = grown;
      }
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > limit) return tooLarge(`more than ${limit}`);
    return buffer.toString('utf8', 0, length);
  } catch (error) {
    return { problem: `cannot read file: ${(error as Error).message}` };
  } finally {
    await handle.close();
  }
}

/** One consumer's hold on the stores of its patterns. */
export interface FileLease {
  /** The union of the files of every pattern, as one content. */
  readonly contents: Observable<FileContents>;
  /** Resolves once every pattern has been scanned. */
  readonly ready: Promise<void>;
  release(): Promise<void>;
}

interface SharedStore {
  readonly store: IstioFileStore;
  readonly started: Promise<void>;
  holders: number;
}

/**
 * The file stores of a daemon, one per pattern, shared: a path listed under a
 * file registry and under `policy.paths` is watched, read and parsed once, and
 * both consumers see the same parsed documents.
 */
export class IstioFileStores {
  private readonly stores = new Map<string, SharedStore>();

  constructor(
    private readonly limits: FileStoreLimits,
    private readonly log: Logger,
  ) {}

  /** Starts (or joins) the stores for `patterns`, absolute files or globs. */
  acquire(patterns: readonly string[]): FileLease {
    const distinct = [...new Set(patterns)];
    const held = distinct.map((pattern) => {
      let shared = this.stores.get(pattern);
      if (shared === undefined) {
        const store = new IstioFileStore([pattern], this.limits, this.log.child({ files: pattern }));
        shared = { store, started: store.start(), holders: 0 };
        this.stores.set(pattern, shared);
      }
      shared.holders += 1;
      return { pattern, shared };
    });
    let released = false;
    return {
      contents: held.length === 0 ? of(NO_FILES) : combineLatest(held.map((h) => h.shared.store.contents)).pipe(map(unionOf)),
      ready: Promise.all(held.map((h) => h.shared.started)).then(() => undefined),
      release: async () => {
        if (released) return;
        released = true;
        await Promise.all(
          held.map(async ({ pattern, shared }) => {
            shared.holders -= 1;
            if (shared.holders > 0) return;
            this.stores.delete(pattern);
            await shared.started.catch(() => undefined);
            await shared.store.stop();
          }),
        );
      },
    };
  }
}

function unionOf(parts: readonly FileContents[]): FileContents {
  if (parts.length === 1) return parts[0]!;
  const accepted = new Map<string, ParsedFile>();
  const diagnostics = new Map<string, Diagnostic>();
  for (const part of parts) {
    for (const [path, file] of part.accepted) accepted.set(path, file);
    // A file two patterns match is reported by both stores; once is enough.
    for (const d of part.diagnostics) diagnostics.set(formatDiagnostic(d), d);
  }
  return { accepted, diagnostics: [...diagnostics.values()] };
}

/**
 * A consumer's files, watched from `start()` to `stop()`: `contents` exists
 * from construction, so a registry's `states` can be subscribed before it
 * starts, and completes on stop.
 */
export class FileSubscription {
  readonly contents: Observable<FileContents>;
  private readonly leases = new ReplaySubject<FileLease>(1);
  private readonly stopped = new ReplaySubject<void>(1);
  private lease: FileLease | undefined;

  constructor(
    private readonly stores: IstioFileStores,
    private readonly patterns: readonly string[],
  ) {
    this.contents = this.leases.pipe(
      switchMap((lease) => lease.contents),
      takeUntil(this.stopped),
    );
  }

  start(): Promise<void> {
    this.lease ??= this.stores.acquire(this.patterns);
    this.leases.next(this.lease);
    return this.lease.ready;
  }

  async stop(): Promise<void> {
    await this.lease?.release();
    this.stopped.next();
    this.stopped.complete();
  }
}
