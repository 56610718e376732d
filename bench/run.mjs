// meshbridge's fleet benchmark: N ADS clients, delta and state of the world (in
// worker processes, over real gRPC), against meshbridge and against
// go-control-plane servers (snapshot cache and linear cache) serving the same
// resources, in the same run. See bench/README.md.
//
//   npm run bench                      # defaults below
//   BENCH_CLIENTS=200 BENCH_SERVICES=100 BENCH_ENDPOINTS=1000 npm run bench
import { execFileSync, fork, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildSnapshot } from '../dist/xds/cache/snapshot.js';
import { encodeDiscoveryResponse } from '../dist/xds/cache/wire.js';
import { loadEnvoyApi } from '../dist/xds/protos.js';
import { scopeCatalog } from '../dist/model/routing/scope.js';
import { translate } from '../dist/xds/translate/translate.js';
import { TypeUrl } from '../dist/xds/type-urls.js';
import { applyChange, catalog, changedService, clusterName, scopeHosts, services } from './fleet.mjs';
import { MALLOC_ENVIRONMENT, NODE_FLAGS } from '../dist/daemon/heap.js';

const here = dirname(fileURLToPath(import.meta.url));
const env = (name, fallback) => process.env[`BENCH_${name}`] ?? fallback;
const { values: flags } = parseArgs({
  options: {
    clients: { type: 'string', default: env('CLIENTS', '2000') },
    services: { type: 'string', default: env('SERVICES', '1000') },
    endpoints: { type: 'string', default: env('ENDPOINTS', '10000') },
    changes: { type: 'string', default: env('CHANGES', '200') },
    // After the last client has a change, before the next: 100 ms leaves the previous change's ACKs still being read; 1,000 lets the server settle.
    'gap-ms': { type: 'string', default: env('GAP_MS', '100') },
    workers: { type: 'string', default: env('WORKERS', '4') },
    // How the clients speak gRPC: http2 (framing by hand over node:http2) or grpc-js; see worker.mjs.
    'client-stack': { type: 'string', default: env('CLIENT_STACK', 'http2') },
    servers: { type: 'string', default: env('SERVERS', 'meshbridge,go-snapshot,go-linear') },
    protocols: { type: 'string', default: env('PROTOCOLS', 'delta,sotw') },
    scenarios: { type: 'string', default: env('SCENARIOS', 'fleet,failover,scoped') },
    'scoped-clients': { type: 'string', default: env('SCOPED_CLIENTS', '10000') },
    'scope-groups': { type: 'string', default: env('SCOPE_GROUPS', '50') },
    // meshbridge's xds.listenBacklog; the kernel caps it at net.core.somaxconn, which also sizes go-control-plane's queue.
    'listen-backlog': { type: 'string', default: env('LISTEN_BACKLOG', '4096') },
    'debounce-ms': { type: 'string', default: env('DEBOUNCE_MS', '10') },
    'max-delay-ms': { type: 'string', default: env('MAX_DELAY_MS', '100') },
    'push-concurrency': { type: 'string', default: env('PUSH_CONCURRENCY', '64') },
    'storm-timeout-s': { type: 'string', default: env('STORM_TIMEOUT_S', '180') },
    'change-timeout-s': { type: 'string', default: env('CHANGE_TIMEOUT_S', '15') },
    out: { type: 'string', default: env('OUT', join(here, 'results')) },
  },
});
const opts = {
  clients: Number(flags.clients),
  services: Number(flags.services),
  endpoints: Number(flags.endpoints),
  changes: Number(flags.changes),
  gapMs: Number(flags['gap-ms']),
  workers: Number(flags.workers),
  clientStack: flags['client-stack'],
  debounceMs: Number(flags['debounce-ms']),
  maxDelayMs: Number(flags['max-delay-ms']),
  pushConcurrency: Number(flags['push-concurrency']),
  pushSlotTimeoutMs: 2_000,
  scopedClients: Number(flags['scoped-clients']),
  scopeGroups: Number(flags['scope-groups']),
  listenBacklog: Number(flags['listen-backlog']),
  somaxconn: Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim()),
};
if (!['http2', 'grpc-js'].includes(opts.clientStack)) throw new Error(`--client-stack: http2 or grpc-js, not ${opts.clientStack}`);
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const api = loadEnvoyApi();

// --- the workload, translated once here for the yardstick and for the clients' expectations ---
const initial = translate(catalog(services(opts)), 'sidecar', { sidecarBind: '127.0.0.1' });
const expected = { cds: initial.clusters.length, eds: initial.endpoints.length, lds: initial.listeners.length, rds: initial.routes.length };
const routeNames = initial.routes.map((r) => r.name);

/** A view's resources as four encoded DiscoveryResponses, for go-control-plane to load. */
function writeResources(dir, view) {
  mkdirSync(dir, { recursive: true });
  const snapshot = buildSnapshot('sidecar', view, (t, b) => api.pack(t, b));
  const files = { [TypeUrl.Cluster]: 'cds.pb', [TypeUrl.ClusterLoadAssignment]: 'eds.pb', [TypeUrl.Listener]: 'lds.pb', [TypeUrl.RouteConfiguration]: 'rds.pb' };
  for (const [typeUrl, file] of Object.entries(files)) {
    const entries = [...snapshot.resources.get(typeUrl).values()].map((r) => r.wire.sotw);
    writeFileSync(join(dir, file), encodeDiscoveryResponse({ version: '1', typeUrl, nonce: '', entries }).join());
  }
}

/** Each Sidecar group's view of the scoped fleet, translated as meshbridge translates it; computed once, when first asked for. */
let scopedViews;
function scopeViews() {
  if (scopedViews !== undefined) return scopedViews;
  const full = catalog(services(opts));
  scopedViews = [];
  for (let g = 0; g < opts.scopeGroups; g++) {
    scopedViews.push(translate(scopeCatalog(full, new Set(scopeHosts(opts.services, g))), 'sidecar', { sidecarBind: '127.0.0.1' }));
  }
  return scopedViews;
}

// --- process measurements, the same way for both servers ---
const TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
function currentRssMiB(pid) {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) / 1024 : NaN;
}
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS; // utime + stime
}
function peakRssMiB(pid) {
  const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) / 1024 : NaN;
}

// --- servers ---
async function startMeshbridge(name = 'meshbridge', scoped = false) {
  // BENCH_DAEMON_NODE_ARGS: node flags for the meshbridge process alone, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile it.
  // The Node flags the packaged daemon runs with, then any given for the run.
  const execArgv = [...NODE_FLAGS, ...(process.env.BENCH_DAEMON_NODE_ARGS ?? '').split(' ').filter((a) => a !== '')];
  // The allocator settings the systemd unit gives the daemon.
  const env = { ...process.env, ...MALLOC_ENVIRONMENT };
  const child = fork(join(here, 'daemon.mjs'), [JSON.stringify({ ...opts, scopeGroups: scoped ? opts.scopeGroups : 0 })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv, env });
  const port = await new Promise((resolve, reject) => {
    child.on('message', (m) => m.kind === 'ready' && resolve(m.port));
    child.on('exit', (code) => reject(new Error(`meshbridge bench daemon exited with ${code}`)));
  });
  let builds = [];
  child.on('message', (m) => m.kind === 'built' && builds.push(m.ms));
  return {
    name,
    pid: child.pid,
    address: `127.0.0.1:${port}`,
    kill: () => child.kill('SIGKILL'),
    change: async (k) => child.send({ kind: 'change', k }),
    buildTimes: () => builds,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.send({ kind: 'stop' });
      await new Promise((r) => child.once('exit', r));
    },
  };
}

/** The go-control-plane yardstick: MESHBRIDGE_BENCH_GO_CONTROL_PLANE, or built from bench/go-control-plane and cached by scripts/build-go.sh. */
let goBinaryPath = process.env.MESHBRIDGE_BENCH_GO_CONTROL_PLANE || undefined;
function goBinary() {
  if (goBinaryPath === undefined) {
    const out = execFileSync('bash', [join(here, '..', 'scripts', 'build-go.sh'), 'bench/go-control-plane', 'go-control-plane'], { stdio: ['ignore', 'pipe', 'inherit'] });
    goBinaryPath = out.toString().trim().split('\n').at(-1);
  }
  return goBinaryPath;
}

/**
 * go-control-plane with its snapshot cache (`snapshot`) or a linear cache per
 * type (`linear`), serving the whole sidecar view or, `scoped`, each Sidecar
 * group's view to that group's nodes.
 */
async function startGo(cacheKind, name = `go-${cacheKind}`, scoped = false) {
  const dir = join(tmpdir(), `meshbridge-bench-${process.pid}${scoped ? '-scoped' : ''}`);
  const args = ['-resources', dir, '-cache', cacheKind];
  if (scoped) {
    scopeViews().forEach((view, g) => writeResources(join(dir, `g${g}`), view));
    args.push('-groups', String(opts.scopeGroups));
  } else {
    writeResources(dir, initial);
  }
  const child = spawn(goBinary(), args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const ports = await new Promise((resolve, reject) => {
    let text = '';
    child.stdout.on('data', (d) => {
      text += d;
      const xds = /xds (\S+)/.exec(text);
      const control = /control (\S+)/.exec(text);
      if (xds && control) resolve({ xds: xds[1], control: control[1] });
    });
    child.on('exit', (code) => reject(new Error(`go-control-plane exited with ${code}`)));
  });
  const list = services(opts);
  return {
    name,
    pid: child.pid,
    address: ports.xds,
    kill: () => child.kill('SIGKILL'),
    /** The changed ClusterLoadAssignment, translated by meshbridge's translator before the clock starts. */
    prepare: (k) => {
      const i = applyChange(list, k);
      const cla = translate(catalog([list[i]]), 'sidecar', { sidecarBind: '127.0.0.1' }).endpoints[0];
      return api.pack(TypeUrl.ClusterLoadAssignment, cla).value;
    },
    change: async (k, body) => {
      const response = await fetch(`http://${ports.control}/cla`, { method: 'POST', body });
      if (!response.ok) throw new Error(`go-control-plane: ${response.status} ${await response.text()}`);
    },
    buildTimes: () => [],
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

// --- one run against one server ---
function startWorkers(addresses, protocol, failover = false, scope = undefined, clients = opts.clients) {
  const workers = [];
  for (let w = 0; w < opts.workers; w++) {
    const ids = [];
    for (let c = w; c < clients; c += opts.workers) ids.push(`vm-${c}`);
    // BENCH_WORKER_NODE_ARGS: node flags for the client processes, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to see what the clients cost.
    const execArgv = (process.env.BENCH_WORKER_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
    const child = fork(join(here, 'worker.mjs'), [JSON.stringify({ addresses, ids, routeNames, expected, protocol, failover, scope, stack: opts.clientStack })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
    workers.push(child);
  }
  let errors = 0;
  for (const w of workers) w.on('message', (m) => m.kind === 'error' && (errors += 1));
  return { workers, errors: () => errors };
}

function allReply(workers, kind, timeoutMs, filter = () => true) {
  return Promise.all(
    workers.map(
      (w) =>
        new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`no "${kind}" from a worker within ${timeoutMs} ms`)), timeoutMs);
          const onMessage = (m) => {
            if (m.kind === kind && filter(m)) {
              clearTimeout(timer);
              w.off('message', onMessage);
              resolve(m);
            }
          };
          w.on('message', onMessage);
        }),
    ),
  );
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function runAgainst(server, protocol) {
  const { workers, errors } = startWorkers([server.address], protocol);
  await allReply(workers, 'ready', 30_000);
  const rssIdle = currentRssMiB(server.pid);
  const cpu0 = cpuSeconds(server.pid);
  const t0 = now();
  for (const w of workers) w.send({ kind: 'connect' });
  const completes = await allReply(workers, 'complete', Number(flags['storm-timeout-s']) * 1000).catch(async (error) => {
    const p = allReply(workers, 'stats', 10_000);
    for (const w of workers) w.send({ kind: 'stats' });
    const stats = await p;
    for (const w of workers) w.kill();
    throw new Error(`${error.message}: ${stats.reduce((s, m) => s + m.completed, 0)} of ${opts.clients} clients complete, ${errors()} stream errors`);
  });
  const stormS = (Math.max(...completes.map((m) => m.at)) - t0) / 1000;
  const cpuStorm = cpuSeconds(server.pid) - cpu0;
  const stormStats = await (async () => {
    const p = allReply(workers, 'stats', 10_000);
    for (const w of workers) w.send({ kind: 'stats' });
    return p;
  })();
  const stormBytes = stormStats.reduce((s, m) => s + m.bytes, 0);
  console.error(`${server.name} (${protocol}): ${opts.clients} clients have ACKed full config after ${stormS.toFixed(2)} s`);
  await sleep(1_000);
  // What holding the fleet costs: resident memory with every client connected and in sync, over the idle server's.
  const rssPer1000Clients = ((currentRssMiB(server.pid) - rssIdle) / opts.clients) * 1000;

  const latencies = [];
  const cpu1 = cpuSeconds(server.pid);
  try {
    for (let k = 1; k <= opts.changes; k++) {
      const name = clusterName(opts.services, changedService(opts.services, k));
      const armed = allReply(workers, 'armed', 10_000, (m) => m.k === k);
      for (const w of workers) w.send({ kind: 'arm', k, name });
      await armed;
      const body = server.prepare?.(k);
      const changed = allReply(workers, 'changed', Number(flags['change-timeout-s']) * 1000, (m) => m.k === k);
      const start = now();
      await server.change(k, body);
      const replies = await changed;
      latencies.push(Math.max(...replies.map((m) => m.at)) - start);
      await sleep(opts.gapMs);
    }
  } catch (error) {
    // A change that never reached every client ends the run; its workers must not outlive it, holding the machine.
    for (const w of workers) w.kill();
    throw new Error(`${error.message} (after ${latencies.length} changes; storm ${stormS.toFixed(2)} s, peak RSS ${peakRssMiB(server.pid).toFixed(0)} MiB)`);
  }
  const cpuChanges = cpuSeconds(server.pid) - cpu1;
  const stats = await (async () => {
    const p = allReply(workers, 'stats', 10_000);
    for (const w of workers) w.send({ kind: 'stats' });
    return p;
  })();
  const totalBytes = stats.reduce((s, m) => s + m.bytes, 0);
  const rss = peakRssMiB(server.pid);
  for (const w of workers) w.send({ kind: 'stop' });
  await Promise.all(workers.map((w) => new Promise((r) => w.once('exit', r))));
  const sorted = [...latencies].sort((a, b) => a - b);
  const builds = server.buildTimes().slice(1);
  return {
    server: server.name,
    protocol,
    connectStormS: stormS,
    changeP50Ms: percentile(sorted, 50),
    changeP99Ms: percentile(sorted, 99),
    changeMaxMs: sorted.at(-1),
    cpuStormS: cpuStorm,
    cpuChangesS: cpuChanges,
    cpuTotalS: cpuSeconds(server.pid) - cpu0,
    peakRssMiB: rss,
    rssMiBPer1000Clients: rssPer1000Clients,
    stormMiB: stormBytes / 2 ** 20,
    bytesPerChangeKiB: (totalBytes - stormBytes) / opts.changes / 1024,
    clientErrors: errors(),
    rebuildMsMedian: builds.length > 0 ? [...builds].sort((a, b) => a - b)[Math.floor(builds.length / 2)] : undefined,
    latenciesMs: latencies,
  };
}

function askStats(workers) {
  const p = allReply(workers, 'stats', 10_000);
  for (const w of workers) w.send({ kind: 'stats' });
  return p;
}

/**
 * Two replicas of one server fed the same inputs, half the clients on each. One
 * is killed (SIGKILL) as a change arrives at the other: how long until every
 * client, those that moved included, has that change, and how many bytes the
 * moved clients were sent again. meshbridge's replicas share nothing but their
 * inputs, so a delta client that lists what it has (initial_resource_versions)
 * should get only what changed. go-control-plane's replicas are two processes
 * that loaded the same files.
 */
async function runFailover(name, protocol) {
  const replicas = [await startServer(name, `${name} replica a`), await startServer(name, `${name} replica b`)];
  const [victim, survivor] = replicas;
  try {
    const { workers, errors } = startWorkers(replicas.map((r) => r.address), protocol, true);
    await allReply(workers, 'ready', 30_000);
    for (const w of workers) w.send({ kind: 'connect' });
    await allReply(workers, 'complete', Number(flags['storm-timeout-s']) * 1000);
    await sleep(1_000);
    const before = await askStats(workers);
    const k = 1;
    const cluster = clusterName(opts.services, changedService(opts.services, k));
    const armed = allReply(workers, 'armed', 10_000, (m) => m.k === k);
    for (const w of workers) w.send({ kind: 'arm', k, name: cluster });
    await armed;
    const body = survivor.prepare?.(k);
    const changed = allReply(workers, 'changed', Number(flags['storm-timeout-s']) * 1000, (m) => m.k === k);
    const start = now();
    victim.kill();
    await survivor.change(k, body);
    const replies = await changed;
    const inSyncS = (Math.max(...replies.map((m) => m.at)) - start) / 1000;
    const after = await askStats(workers);
    const sum = (list, key) => list.reduce((s, m) => s + m[key], 0);
    const moved = sum(after, 'reconnects') - sum(before, 'reconnects');
    const stormBytes = sum(before, 'bytes');
    const resentBytes = sum(after, 'bytes') - stormBytes;
    for (const w of workers) w.send({ kind: 'stop' });
    await Promise.all(workers.map((w) => new Promise((r) => w.once('exit', r))));
    console.error(`${survivor.name} (${protocol}): ${moved} clients moved, all in sync after ${inSyncS.toFixed(2)} s`);
    return {
      server: name,
      scenario: 'failover',
      protocol,
      failoverInSyncS: inSyncS,
      clientsMoved: moved,
      stormMiB: stormBytes / 2 ** 20,
      failoverMiB: resentBytes / 2 ** 20,
      failoverPercentOfStorm: (resentBytes / stormBytes) * 100,
      failoverKiBPerMovedClient: moved > 0 ? resentBytes / moved / 1024 : undefined,
      clientErrors: errors(),
    };
  } finally {
    for (const r of replicas) await r.stop();
  }
}

/**
 * Scoped fleet: every client's node carries a label its group's Sidecar
 * selects, and each Sidecar declares 20 services, so a client receives 20
 * services' clusters, endpoints, listeners and routes instead of all of them
 * (go-control-plane: the same group's view, from files).
 * Measured: the connect storm of `scopedClients` clients until every one has
 * its whole scoped view ACKed, the bytes sent, and the server's memory.
 */
async function runScoped(name, protocol) {
  const views = scopeViews();
  const scope = {
    groups: opts.scopeGroups,
    expected: views.map((view) => ({ cds: view.clusters.length, eds: view.endpoints.length, lds: view.listeners.length, rds: view.routes.length })),
    routeNames: views.map((view) => view.routes.map((r) => r.name)),
  };
  const server = await startServer(name, `${name} scoped`, true);
  try {
    const { workers, errors } = startWorkers([server.address], protocol, false, scope, opts.scopedClients);
    await allReply(workers, 'ready', 30_000);
    const rssIdle = currentRssMiB(server.pid);
    const cpu0 = cpuSeconds(server.pid);
    const t0 = now();
    for (const w of workers) w.send({ kind: 'connect' });
    const completes = await allReply(workers, 'complete', Number(flags['storm-timeout-s']) * 1000).catch(async (error) => {
      const stats = await askStats(workers);
      for (const w of workers) w.kill();
      throw new Error(`${error.message}: ${stats.reduce((s, m) => s + m.completed, 0)} of ${opts.scopedClients} clients complete, ${errors()} stream errors`);
    });
    const stormS = (Math.max(...completes.map((m) => m.at)) - t0) / 1000;
    const cpuStorm = cpuSeconds(server.pid) - cpu0;
    const stats = await askStats(workers);
    await sleep(1_000);
    const rssPer1000Clients = ((currentRssMiB(server.pid) - rssIdle) / opts.scopedClients) * 1000;
    for (const w of workers) w.send({ kind: 'stop' });
    await Promise.all(workers.map((w) => new Promise((r) => w.once('exit', r))));
    console.error(`${server.name} (${protocol}): ${opts.scopedClients} clients in ${opts.scopeGroups} Sidecar groups in sync after ${stormS.toFixed(2)} s`);
    return {
      server: name,
      scenario: 'scoped',
      protocol,
      clients: opts.scopedClients,
      scopedStormS: stormS,
      cpuStormS: cpuStorm,
      peakRssMiB: peakRssMiB(server.pid),
      rssMiBPer1000Clients: rssPer1000Clients,
      stormMiB: stats.reduce((s, m) => s + m.bytes, 0) / 2 ** 20,
      clientErrors: errors(),
      connectRetries: stats.reduce((s, m) => s + (m.connectRetries ?? 0), 0),
    };
  } finally {
    await server.stop();
  }
}

// --- main ---
/** Server `name` (meshbridge, go-snapshot or go-linear), labelled `label` in progress lines; `scoped` serves each Sidecar group its view. */
async function startServer(name, label = name, scoped = false) {
  if (name === 'meshbridge') return startMeshbridge(label, scoped);
  if (name === 'go-snapshot' || name === 'go-linear') return startGo(name.slice(3), label, scoped);
  throw new Error(`--servers: unknown server ${name} (meshbridge, go-snapshot, go-linear)`);
}

async function runFleet(name, protocol) {
  const server = await startServer(name);
  try {
    return await runAgainst(server, protocol);
  } finally {
    await server.stop();
  }
}

const serverNames = flags.servers.split(',');
const protocols = flags.protocols.split(',');
const scenarios = flags.scenarios.split(',');
for (const p of protocols) if (p !== 'delta' && p !== 'sotw') throw new Error(`--protocols: unknown protocol ${p} (delta, sotw)`);
for (const s of scenarios) if (!['fleet', 'failover', 'scoped'].includes(s)) throw new Error(`--scenarios: unknown scenario ${s} (fleet, failover, scoped)`);
const runners = { failover: runFailover, scoped: runScoped, fleet: runFleet };
const results = [];
// Every scenario against every server; a fresh server per run, so memory and CPU figures are the run's own.
for (const protocol of protocols) {
  for (const scenario of ['failover', 'scoped', 'fleet']) {
    if (!scenarios.includes(scenario)) continue;
    for (const name of serverNames) {
      try {
        results.push({ ...(await runners[scenario](name, protocol)), scenario });
      } catch (error) {
        console.error(`${name} ${scenario} (${protocol}): ${error.message}`);
        results.push({ server: name, scenario, protocol, error: error.message });
      }
      await sleep(1_000);
    }
  }
}

const rows = {
  fleet: [
    ['connect storm, all ACKed (s)', 'connectStormS', 2],
    ['one endpoint change, p50 (ms)', 'changeP50Ms', 1],
    ['one endpoint change, p99 (ms)', 'changeP99Ms', 1],
    ['one endpoint change, max (ms)', 'changeMaxMs', 1],
    ['server CPU, storm (s)', 'cpuStormS', 2],
    ['server CPU, changes (s)', 'cpuChangesS', 2],
    ['server peak RSS (MiB)', 'peakRssMiB', 0],
    ['server MiB per 1,000 clients', 'rssMiBPer1000Clients', 1],
    ['bytes sent, storm (MiB)', 'stormMiB', 1],
    ['bytes sent per change (KiB)', 'bytesPerChangeKiB', 1],
    ['client stream errors', 'clientErrors', 0],
    ['meshbridge rebuild per change, median (ms)', 'rebuildMsMedian', 1],
  ],
  scoped: [
    [`scoped: ${opts.scopedClients} clients all ACKed (s)`, 'scopedStormS', 2],
    ['scoped: server CPU (s)', 'cpuStormS', 2],
    ['scoped: server peak RSS (MiB)', 'peakRssMiB', 0],
    ['scoped: server MiB per 1,000 clients', 'rssMiBPer1000Clients', 1],
    ['scoped: bytes sent (MiB)', 'stormMiB', 1],
    ['scoped: connection retries', 'connectRetries', 0],
    ['scoped: client stream errors', 'clientErrors', 0],
  ],
  failover: [
    ['failover: clients moved', 'clientsMoved', 0],
    ['failover: every client in sync (s)', 'failoverInSyncS', 2],
    ['failover: bytes resent (MiB)', 'failoverMiB', 1],
    ["failover: resent, % of the storm's bytes", 'failoverPercentOfStorm', 2],
    ['failover: resent per moved client (KiB)', 'failoverKiBPerMovedClient', 1],
    ['failover: client stream errors', 'clientErrors', 0],
  ],
};
const fmt = (v, d) => (typeof v === 'number' ? v.toFixed(d) : '-');
console.log(`\nfleet: ${opts.clients} ADS clients in ${opts.workers} worker processes (gRPC over ${opts.clientStack}), ${opts.services} services, ${opts.endpoints} endpoints, ${opts.changes} changes ${opts.gapMs} ms apart; meshbridge debounce ${opts.debounceMs} ms (max ${opts.maxDelayMs}), push concurrency ${opts.pushConcurrency}`);
console.log(`scoped: ${opts.scopedClients} clients in ${opts.scopeGroups} Sidecar groups, 20 services each; failover: ${opts.clients} clients on two replicas, one killed`);
console.log(`accept queue: meshbridge asks for ${opts.listenBacklog}; the kernel caps every queue at net.core.somaxconn = ${opts.somaxconn}`);
for (const protocol of protocols) {
  console.log(`\n${protocol === 'sotw' ? 'state of the world' : 'delta (incremental)'} clients`);
  console.log(`${'metric'.padEnd(44)}${serverNames.map((n) => n.padStart(14)).join('')}`);
  for (const scenario of ['fleet', 'scoped', 'failover']) {
    const columns = serverNames.map((name) => results.find((r) => r.server === name && r.protocol === protocol && r.scenario === scenario));
    for (const [label, key, d] of rows[scenario]) {
      if (columns.every((r) => typeof r?.[key] !== 'number')) continue;
      console.log(`${label.padEnd(44)}${columns.map((r) => fmt(r?.[key], d).padStart(14)).join('')}`);
    }
  }
}
for (const r of results) if (r.error) console.log(`${r.server} ${r.scenario} (${r.protocol}): FAILED: ${r.error}`);
mkdirSync(flags.out, { recursive: true });
const file = join(flags.out, `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(file, JSON.stringify({ options: opts, expected, node: process.version, results }, null, 2));
console.log(`\nwritten ${file}`);
if (results.some((r) => r.error)) process.exitCode = 1;
