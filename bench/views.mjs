// Per-node views: how long one endpoint change takes to rebuild every view
// when each VM runs `meshbridge agent` (a node in front of workloads gets a
// view of its own: its inbound listeners beside what its scope shares).
// The daemon's own Views class, 1,000 services and 10,000 endpoints as in
// run.mjs, one workload per node; no clients, so this is the rebuild alone.
//   node --max-semi-space-size=32 bench/views.mjs [nodes ...]   (default 0 400 2000)
import { pino } from 'pino';
import { Views } from '../dist/daemon/views.js';
import { FindingsLog } from '../dist/daemon/findings-log.js';
import { SnapshotCache } from '../dist/xds/cache/snapshot-cache.js';
import { loadEnvoyApi } from '../dist/xds/protos.js';
import { mergeCatalog } from '../dist/model/merge.js';
import { buildRoutingModel } from '../dist/model/routing/build.js';
import { EMPTY_POLICY } from '../dist/istio/policy-set.js';
import { scopeName } from '../dist/model/routing/scope.js';
import { viewKey } from '../dist/xds/translate/translate.js';
import { applyChange, registryState, services } from './fleet.mjs';

const CHANGES = 12;
const api = loadEnvoyApi();
const log = pino({ level: 'silent' });

async function measure(nodes) {
  const cache = new SnapshotCache();
  const nodeViews = Array.from({ length: nodes }, (_, i) => viewKey('sidecar', undefined, scopeName(undefined, -1, `vm-${i}`)));
  const views = new Views(cache, (typeUrl, body) => api.pack(typeUrl, body), log, new FindingsLog(log), {
    translate: () => ({ sidecarBind: '127.0.0.1' }),
    proxylessRetentionMs: () => 0,
    connectedViews: () => nodeViews,
    draining: () => false,
    access: () => [],
  });
  // Endpoint j of service i runs on node vm-(10i + j): the first `nodes` endpoints each get a node.
  let list = services({ services: 1000, endpoints: 10000 }).map((s, i) => ({
    ...s,
    endpoints: s.endpoints.map((e, j) => (i * 10 + j < nodes ? { ...e, node: `vm-${i * 10 + j}` } : e)),
  }));
  // As the daemon's pipeline does: each catalog and routing model built with the previous one.
  let previous;
  const update = () => {
    const catalog = mergeCatalog([registryState(list)], previous?.catalog);
    const routing = buildRoutingModel(catalog, EMPTY_POLICY, previous?.routing);
    previous = { catalog, routing };
    views.update(catalog, routing, EMPTY_POLICY);
  };
  update();
  for (const view of nodeViews) cache.set(views.snapshot(view));
  const ms = [];
  for (let k = 1; k <= CHANGES; k++) {
    list = [...list];
    applyChange(list, k);
    const started = performance.now();
    update();
    ms.push(performance.now() - started);
    // As in the daemon, each update is its own task (weak references are only let go between tasks).
    await new Promise((resolve) => setImmediate(resolve));
  }
  ms.sort((a, b) => a - b);
  globalThis.gc?.();
  const heapMiB = process.memoryUsage().heapUsed / 2 ** 20;
  console.log(`${String(nodes).padStart(5)} node views: one change rebuilds every view in ${ms[CHANGES / 2].toFixed(0)} ms median (${ms[0].toFixed(0)}-${ms.at(-1).toFixed(0)}), heap ${heapMiB.toFixed(0)} MiB`);
}

const counts = process.argv.slice(2).map(Number);
for (const nodes of counts.length > 0 ? counts : [0, 400, 2000]) await measure(nodes);
