// meshbridge as the benchmark runs it: the daemon's real pipeline (batching,
// merge, translation once per view, snapshot cache, ADS server) fed by an
// in-memory registry that the runner drives over IPC. Started by run.mjs.
import { Subject, of } from 'rxjs';
import { pino } from 'pino';
import { buildView, catalogUpdates } from '../dist/daemon/pipeline.js';
import { EMPTY_POLICY } from '../dist/istio/policy-set.js';
import { scopeCatalog, scopeFilters, scopeName, scopedHostnames, selectSidecar } from '../dist/model/routing/scope.js';
import { parseView } from '../dist/xds/translate/translate.js';
import { TranslationMemo } from '../dist/xds/translate/memo.js';
import { SnapshotCache } from '../dist/xds/cache/snapshot-cache.js';
import { loadEnvoyApi } from '../dist/xds/protos.js';
import { XdsServer } from '../dist/xds/server/ads-server.js';
import { applyChange, registryState, scopedPolicy, services } from './fleet.mjs';
import { limitHeapGrowth } from '../dist/daemon/heap.js';
import { SlicedQueue } from '../dist/daemon/sliced-queue.js';

// As `meshbridge run` does.
limitHeapGrowth();

const options = JSON.parse(process.argv[2]);
const log = pino({ level: 'warn' });
const api = loadEnvoyApi();
const cache = new SnapshotCache();
// Scoped fleet: one Sidecar per group of clients, each declaring 20 services; nodes pick theirs by label, as in the daemon.
const policy = options.scopeGroups > 0 ? scopedPolicy(options.services, options.scopeGroups) : EMPTY_POLICY;
const scopeOf = options.scopeGroups > 0 ? (node) => scopeName(selectSidecar(policy.sidecars, node), -1) : undefined;
const server = new XdsServer(api, cache, log, {}, { pushConcurrency: options.pushConcurrency, pushSlotTimeoutMs: options.pushSlotTimeoutMs, scopeOf });
const registry = new Subject();
let list = services(options);
const pack = (typeUrl, body) => api.pack(typeUrl, body);

// As in the daemon: views are built when a client first needs them (outside its push), then rebuilt on every change.
const translateOptions = { sidecarBind: '127.0.0.1' };
const memo = new TranslationMemo();
let latest;
/** A view's snapshot, from its scope's services when it has one (bench views have no locality). */
function build(view, catalog, routing, previous) {
  const { scope } = parseView(view);
  let scoped = catalog;
  if (scope !== undefined) {
    const { declared, allowed } = scopeFilters(scope, policy.sidecars, () => undefined);
    scoped = scopeCatalog(catalog, scopedHostnames(catalog, routing, declared, allowed));
  }
  return buildView(view, scoped, routing, translateOptions, pack, previous, undefined, memo).snapshot;
}
// As in the daemon (Views): a few milliseconds' worth of wanted views per event-loop turn.
const wanted = new SlicedQueue((view) => {
  if (latest && !cache.peek(view)) cache.set(build(view, latest.catalog, latest.routing, undefined));
}, 10);
cache.onWanted((view) => wanted.add(view));
catalogUpdates([registry], of(policy), { debounceMs: options.debounceMs, maxDelayMs: options.maxDelayMs }).subscribe(({ catalog, routing }) => {
  const started = performance.now();
  latest = { catalog, routing };
  memo.nextUpdate();
  for (const view of cache.views()) cache.set(build(view, catalog, routing, cache.peek(view)));
  process.send?.({ kind: 'built', ms: performance.now() - started });
});

const port = await server.listen({ listen: '127.0.0.1:0', backlog: options.listenBacklog });
registry.next(registryState(list));
process.on('message', (message) => {
  if (message.kind === 'change') {
    list = [...list];
    applyChange(list, message.k);
    registry.next(registryState(list));
  } else if (message.kind === 'stop') {
    void server.shutdown(1_000).then(() => process.exit(0));
  }
});
process.send?.({ kind: 'ready', port });
if (process.env.BENCH_DEBUG) {
  setInterval(() => {
    // With --expose-gc in BENCH_DAEMON_NODE_ARGS, heapUsed is what is live, not what awaits collection.
    globalThis.gc?.();
    const streams = server.connections();
    const flows = streams.map((s) => s.flow());
    console.error('daemon:', JSON.stringify({
      streams: streams.length,
      queue: server.pushQueue(),
      pending: flows.filter((f) => f.pushPending).length,
      writing: flows.filter((f) => f.writesInFlight > 0).length,
      bytesInFlightMiB: (flows.reduce((a, f) => a + f.bytesInFlight, 0) / 2 ** 20).toFixed(1),
      // RSS beside what V8 holds live and what Buffers hold outside its heap: the gap is memory freed but not returned.
      ...Object.fromEntries(Object.entries(process.memoryUsage()).map(([k, v]) => [`${k}MiB`, Math.round(v / 2 ** 20)])),
    }));
  }, 5_000).unref();
}
