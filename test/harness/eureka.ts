/**
 * Test harness: a REAL Netflix Eureka server (Spring Cloud Netflix 5.0.1 /
 * Eureka 2.0.5 on Spring Boot 4.0.7), run as a child JVM on a free loopback port.
 *
 * The jar comes from `bash scripts/install-eureka.sh` (built once, cached under
 * ${MESHBRIDGE_CACHE:-~/.cache/meshbridge}/eureka/<hash>/eureka-server.jar, with
 * lib/ and an AppCDS archive eureka-server.jsa beside it). Startup ~2-4 s.
 *
 *   const eureka = await startEurekaServer();
 *   // eureka.serviceUrl === 'http://127.0.0.1:PORT/eureka'
 *   ...
 *   await eureka.stop();   // kills the JVM and awaits its exit
 *   await eureka.start();  // same port again; the registry starts EMPTY
 *
 * Server behaviour with the defaults below (see EUREKA_TEST_PROPERTIES):
 *  - standalone: never registers itself, never fetches, has no peers;
 *  - register/cancel/status changes are visible on /eureka/apps at once
 *    (read-only response cache off);
 *  - /eureka/apps/delta keeps a change for 30 s;
 *  - expired leases are evicted every 1 s, no self-preservation. A lease
 *    expires about 2 x leaseInfo.durationInSecs after its last renewal
 *    (a known Eureka quirk), so tests that need eviction should register with
 *    a small durationInSecs (e.g. 2).
 *
 * Registering over REST: POST {serviceUrl}/apps/{APP} with {"instance": {...}};
 * dataCenterInfo needs "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"
 * (or "com.netflix.appinfo.MyDataCenterInfo"), else 400 "cannot parse request body";
 * port must be an object {"$": 8080, "@enabled": "true"}.
 * For the legacy Eureka 1.x JSON shape (single app/instance as object, "$" as
 * string), pass extraProperties {'eureka.server.json-codec-name': 'XStreamJson'}.
 *
 * Only Node builtins are used. Set MESHBRIDGE_EUREKA_VERBOSE=1 to copy the
 * server's log to stderr; MESHBRIDGE_EUREKA_JAR=/path/x.jar to use another jar.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface EurekaServer {
  /** `http://127.0.0.1:PORT/eureka` (no trailing slash). */
  readonly serviceUrl: string;
  /** `http://127.0.0.1:PORT` */
  readonly baseUrl: string;
  readonly port: number;
  /** True between a successful start and stop (or an unexpected exit). */
  readonly running: boolean;
  /** PID of the JVM while running, else undefined. */
  readonly pid: number | undefined;
  /** Kill the JVM (SIGTERM, SIGKILL after a grace period) and await its exit. Idempotent. */
  stop(): Promise<void>;
  /** (Re)start on the SAME port with the same properties; resolves once /eureka/apps answers 200. */
  start(): Promise<void>;
  /** Last lines of the server's stdout+stderr (all runs). */
  logTail(lines?: number): string;
}

export interface StartEurekaOptions {
  /** Spring properties added to / overriding the defaults, passed as `--key=value`. */
  extraProperties?: Record<string, string>;
  /** Extra JVM flags, placed before `-jar`. */
  extraJvmArgs?: string[];
  /** Fixed port instead of a free one picked at run time. */
  port?: number;
  /** How long to wait for GET /eureka/apps to answer 200. Default 120 s. */
  startupTimeoutMs?: number;
  /** Jar to run; default eurekaServerJar(). */
  jar?: string;
}

/** Default JVM flags: start fast and small. */
export const EUREKA_JVM_ARGS: readonly string[] = [
  '-Xmx256m',
  '-Xss512k',
  '-XX:TieredStopAtLevel=1',
  '-XX:+UseSerialGC',
  '-Xshare:auto',
  '-Djava.awt.headless=true',
];

/**
 * Server properties every test server gets (port-dependent ones are added at
 * start). Names checked against EurekaServerConfigBean of
 * spring-cloud-netflix-eureka-server 5.0.1 (its spring-configuration-metadata.json).
 */
export const EUREKA_TEST_PROPERTIES: Readonly<Record<string, string>> = {
  'server.address': '127.0.0.1',
  // standalone
  'eureka.client.register-with-eureka': 'false',
  'eureka.client.fetch-registry': 'false',
  'eureka.instance.hostname': '127.0.0.1',
  'eureka.server.registry-sync-retries': '0',
  'eureka.server.wait-time-in-ms-when-sync-empty': '0',
  // no lease-expiry protection, fast eviction
  'eureka.server.enable-self-preservation': 'false',
  'eureka.server.eviction-interval-timer-in-ms': '1000',
  // reads see writes at once
  'eureka.server.use-read-only-response-cache': 'false',
  'eureka.server.response-cache-update-interval-ms': '1000',
  // cached /apps/delta is not invalidated when its entries age out: expire it fast
  'eureka.server.response-cache-auto-expiration-in-seconds': '1',
  // delta queue: keep changes 30 s, prune every 1 s
  'eureka.server.retention-time-in-m-s-in-delta-queue': '30000',
  'eureka.server.delta-retention-timer-interval-in-ms': '1000',
  'eureka.server.renewal-threshold-update-interval-ms': '1000',
};

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = resolve(HERE, '..', '..');
const PROJECT_DIR = join(HERE, 'eureka-server');
const LOG_LINES_KEPT = 400;
const STOP_GRACE_MS = 5_000;

/** Cache root shared with scripts/install-eureka.sh. */
function cacheRoot(): string {
  const env = process.env['MESHBRIDGE_CACHE'];
  return env !== undefined && env !== '' ? resolve(env) : join(homedir(), '.cache', 'meshbridge');
}

function listFiles(dir: string, rel: string, out: string[]): void {
  for (const name of readdirSync(dir)) {
    const abs = join(dir, name);
    const r = `${rel}/${name}`;
    if (statSync(abs).isDirectory()) listFiles(abs, r, out);
    else out.push(r);
  }
}

function byteCompare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Same hash as scripts/install-eureka.sh: sha256 over "path\0<sha256 hex>\n" per file, first 16 hex. */
export function eurekaProjectHash(): string {
  const files = ['pom.xml'];
  listFiles(join(PROJECT_DIR, 'src'), 'src', files);
  files.sort(byteCompare);
  const outer = createHash('sha256');
  for (const f of files) {
    const inner = createHash('sha256').update(readFileSync(join(PROJECT_DIR, f))).digest('hex');
    outer.update(`${f}\0${inner}\n`);
  }
  return outer.digest('hex').slice(0, 16);
}

/**
 * Path of the cached Eureka server jar matching the current sources of
 * test/harness/eureka-server. Throws if it has not been built.
 */
export function eurekaServerJar(): string {
  const override = process.env['MESHBRIDGE_EUREKA_JAR'];
  if (override !== undefined && override !== '') {
    if (!existsSync(override)) {
      throw new Error(`MESHBRIDGE_EUREKA_JAR=${override} does not exist.`);
    }
    return override;
  }
  const dir = join(cacheRoot(), 'eureka', eurekaProjectHash());
  const jar = join(dir, 'eureka-server.jar');
  if (!existsSync(jar) || !existsSync(join(dir, 'lib'))) {
    throw new Error(
      `Eureka server jar not found at ${jar}.\n` +
        `Build it first (needs Java 17+ and Maven; ~20-40 s cold):\n` +
        `    bash ${join(REPO_ROOT, 'scripts', 'install-eureka.sh')}\n` +
        `(or point MESHBRIDGE_EUREKA_JAR at a built jar).`,
    );
  }
  return jar;
}

/** A port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? res(port) : rej(new Error('could not get a free port'))));
    });
  });
}

/** GET with a timeout; resolves to the status code, or undefined on a connection error. */
function probe(url: string, timeoutMs: number): Promise<number | undefined> {
  return new Promise((res) => {
    const req = request(url, { method: 'GET', headers: { Accept: 'application/json' }, timeout: timeoutMs }, (r) => {
      r.resume();
      r.on('end', () => res(r.statusCode));
      r.on('error', () => res(undefined));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => res(undefined));
    req.end();
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// Kill every JVM we started if the test process exits without stopping them.
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
function trackChild(child: ChildProcess): void {
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of liveChildren) c.kill('SIGKILL');
    });
  }
}

class PortInUseError extends Error {}

class EurekaServerProcess implements EurekaServer {
  readonly serviceUrl: string;
  readonly baseUrl: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private readonly log: string[] = [];
  private partial = '';

  constructor(
    readonly port: number,
    private readonly jar: string,
    private readonly jvmArgs: readonly string[],
    private readonly props: Readonly<Record<string, string>>,
    private readonly startupTimeoutMs: number,
  ) {
    this.baseUrl = `http://127.0.0.1:${port}`;
    this.serviceUrl = `${this.baseUrl}/eureka`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  logTail(lines = 80): string {
    const all = this.partial === '' ? this.log : [...this.log, this.partial];
    return all.slice(-lines).join('\n');
  }

  private append(chunk: Buffer): void {
    if (process.env['MESHBRIDGE_EUREKA_VERBOSE'] === '1') process.stderr.write(chunk);
    const parts = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = parts.pop() ?? '';
    this.log.push(...parts);
    if (this.log.length > LOG_LINES_KEPT) this.log.splice(0, this.log.length - LOG_LINES_KEPT);
  }

  async start(): Promise<void> {
    if (this.running) return;
    const args = [
      ...this.jvmArgs,
      '-jar',
      this.jar,
      ...Object.entries(this.props).map(([k, v]) => `--${k}=${v}`),
    ];
    // AppCDS archive written by install-eureka.sh; -Xshare:auto ignores it if stale.
    const jsa = this.jar.replace(/\.jar$/, '.jsa');
    if (jsa !== this.jar && existsSync(jsa) && !this.jvmArgs.some((a) => a.startsWith('-XX:SharedArchiveFile='))) {
      args.unshift(`-XX:SharedArchiveFile=${jsa}`);
    }
    const javaHome = process.env['JAVA_HOME'];
    const java = javaHome !== undefined && javaHome !== '' ? join(javaHome, 'bin', 'java') : 'java';
    const startedAt = Date.now();
    this.log.push(`[harness] starting ${java} ${args.join(' ')}`);

    const child = spawn(java, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: HERE });
    this.child = child;
    trackChild(child);
    child.stdout?.on('data', (c: Buffer) => this.append(c));
    child.stderr?.on('data', (c: Buffer) => this.append(c));
    let exitInfo: string | undefined;
    let spawnError: Error | undefined;
    this.exited = new Promise<void>((res) => {
      child.once('error', (e) => {
        spawnError = e;
        exitInfo = `failed to spawn: ${e.message}`;
        res();
      });
      child.once('exit', (code, signal) => {
        exitInfo = `exited with ${signal ?? `code ${String(code)}`}`;
        res();
      });
    });

    const fail = async (why: string): Promise<never> => {
      await this.stop();
      const tail = this.logTail(60);
      const msg =
        `Eureka server on port ${this.port} did not start: ${why}\n` +
        `--- server log (tail) ---\n${tail}\n--- end of server log ---`;
      if (/Port \d+ was already in use|Address already in use/i.test(tail)) throw new PortInUseError(msg);
      if (spawnError !== undefined && (spawnError as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new Error(`${msg}\n'${java}' not found: install a JDK 17+ or set JAVA_HOME.`);
      }
      throw new Error(msg);
    };

    const url = `${this.serviceUrl}/apps`;
    const deadline = startedAt + this.startupTimeoutMs;
    let lastStatus: number | undefined;
    for (;;) {
      if (exitInfo !== undefined) return fail(`the JVM ${exitInfo} during startup`);
      lastStatus = await probe(url, 2_000);
      if (lastStatus === 200) {
        this.log.push(`[harness] ready after ${Date.now() - startedAt} ms`);
        return;
      }
      if (Date.now() > deadline) {
        return fail(
          `GET ${url} did not answer 200 within ${this.startupTimeoutMs} ms (last: ${lastStatus ?? 'no connection'})`,
        );
      }
      await sleep(150);
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    if (this.running) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      try {
        await this.exited;
      } finally {
        clearTimeout(timer);
      }
    } else {
      await this.exited;
    }
    this.child = undefined;
  }
}

/**
 * Start a standalone Eureka server on 127.0.0.1 (free port unless `opts.port`)
 * and wait until `GET /eureka/apps` answers 200. On failure the error includes
 * the tail of the server log.
 */
export async function startEurekaServer(opts: StartEurekaOptions = {}): Promise<EurekaServer> {
  const jar = opts.jar ?? eurekaServerJar();
  const attempts = opts.port === undefined ? 3 : 1;
  for (let i = 1; ; i++) {
    const port = opts.port ?? (await freePort());
    const props: Record<string, string> = {
      'server.port': String(port),
      // Our own URL as the only "peer"; the server drops itself from the peer
      // list (same hostname), so there is no replication and no 8761 default.
      'eureka.client.service-url.defaultZone': `http://127.0.0.1:${port}/eureka/`,
      ...EUREKA_TEST_PROPERTIES,
      ...(opts.extraProperties ?? {}),
    };
    const server = new EurekaServerProcess(
      port,
      jar,
      [...EUREKA_JVM_ARGS, ...(opts.extraJvmArgs ?? [])],
      props,
      opts.startupTimeoutMs ?? 120_000,
    );
    try {
      await server.start();
      return server;
    } catch (e) {
      // Someone grabbed the free port between freePort() and the JVM's bind.
      if (e instanceof PortInUseError && i < attempts) continue;
      throw e;
    }
  }
}
