/**
 * The Spring Boot example app (examples/vm/spring-greeter), built with Maven
 * once and cached like the Eureka server: ${MESHBRIDGE_CACHE:-~/.cache/meshbridge}/
 * spring-greeter/<hash of pom.xml and src/>/spring-greeter.jar. A build in a
 * temporary copy, so the repository never gets a target/.
 */
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const PROJECT = resolve(import.meta.dirname, '../../examples/vm/spring-greeter');

function cacheRoot(): string {
  const env = process.env['MESHBRIDGE_CACHE'];
  return env !== undefined && env !== '' ? resolve(env) : join(homedir(), '.cache', 'meshbridge');
}

function files(dir: string, rel: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const abs = join(dir, name);
    return statSync(abs).isDirectory() ? files(abs, `${rel}/${name}`) : [`${rel}/${name}`];
  });
}

function projectHash(): string {
  const outer = createHash('sha256');
  for (const f of ['pom.xml', ...files(join(PROJECT, 'src'), 'src')].sort()) {
    outer.update(`${f}\0${createHash('sha256').update(readFileSync(join(PROJECT, f))).digest('hex')}\n`);
  }
  return outer.digest('hex').slice(0, 16);
}

/** Path of the runnable jar, building it first when the sources changed. Fails loudly with Maven's output. */
export async function springGreeterJar(): Promise<string> {
  const dir = join(cacheRoot(), 'spring-greeter', projectHash());
  const jar = join(dir, 'spring-greeter.jar');
  if (existsSync(jar)) return jar;
  const work = mkdtempSync(join(tmpdir(), 'meshbridge-greeter-build-'));
  try {
    cpSync(PROJECT, work, { recursive: true, filter: (src) => !src.includes('/target') });
    try {
      await promisify(execFile)('mvn', ['-q', '-B', 'package', '-DskipTests'], { cwd: work, maxBuffer: 64 * 1024 * 1024 });
    } catch (error) {
      const e = error as { stdout?: string; stderr?: string; message: string };
      throw new Error(
        `cannot build examples/vm/spring-greeter (needs Java 17+ and Maven): ${e.message}\n${(e.stdout ?? '').slice(-4000)}${(e.stderr ?? '').slice(-4000)}`,
      );
    }
    mkdirSync(dir, { recursive: true });
    renameSync(join(work, 'target', 'spring-greeter.jar'), jar);
    return jar;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export interface SpringGreeter {
  readonly port: number;
  readonly log: string[];
  stop(): Promise<void>;
}

/** Runs the greeter against a Eureka server; resolves once Spring's Eureka client reports its registration. */
export async function startSpringGreeter(
  jar: string,
  options: { eurekaUrl: string; port: number; version: string; timeoutMs?: number },
): Promise<SpringGreeter> {
  const log: string[] = [];
  const child: ChildProcess = spawn(
    'java',
    ['-Xmx256m', '-XX:TieredStopAtLevel=1', '-XX:+UseSerialGC', '-Xshare:auto', '-jar', jar],
    {
      env: { ...process.env, PORT: String(options.port), EUREKA_URL: options.eurekaUrl, VERSION: options.version },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  let registered!: () => void;
  const isRegistered = new Promise<void>((done) => (registered = done));
  for (const stream of [child.stdout!, child.stderr!]) {
    stream.setEncoding('utf8').on('data', (chunk: string) => {
      for (const line of chunk.split('\n').filter(Boolean)) {
        log.push(line);
        if (/registration status: 204/.test(line)) registered();
      }
    });
  }
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    // Spring's graceful shutdown (mark DOWN, deregister) can take well over 10 s on a loaded machine; a
    // SIGKILL before it ends leaves the app registered and healthy until its lease expires.
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  };
  const timeoutMs = options.timeoutMs ?? 60_000;
  const outcome = await Promise.race([
    isRegistered.then(() => 'registered' as const),
    exited.then(() => 'exited' as const),
    new Promise<'timeout'>((done) => setTimeout(() => done('timeout'), timeoutMs)),
  ]);
  if (outcome !== 'registered') {
    await stop();
    throw new Error(`spring-greeter ${outcome === 'exited' ? 'exited' : `did not register within ${timeoutMs} ms`}:\n${log.slice(-40).join('\n')}`);
  }
  return { port: options.port, log, stop };
}
