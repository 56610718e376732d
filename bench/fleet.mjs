// The benchmark's workload: S services with E endpoints in all, built as the
// catalog a registry would report, and the endpoint changes applied to it.
// Shared by the runner (resources for go-control-plane) and the meshbridge
// bench daemon, so both servers serve the same resources.
import { mergeCatalog } from '../dist/model/merge.js';
import { EMPTY_POLICY } from '../dist/istio/policy-set.js';

export const REGISTRY = 'bench';
/** Services spread over this many ports: as many sidecar listeners and route configurations. */
const PORTS = 20;

function endpoint(address) {
  return { address, ports: {}, labels: {}, locality: { region: 'bench', zone: 'z1', subzone: '' }, weight: 1, health: 'HEALTHY', registry: REGISTRY };
}

export function hostname(i) {
  return `svc-${i}.bench.local`;
}

export function clusterName(services, i) {
  return `outbound|${8000 + (i % PORTS)}||${hostname(i)}`;
}

/** The services, with endpoint changes 1..`changes` applied. */
export function services({ services: count, endpoints }, changes = 0) {
  const list = [];
  for (let i = 0; i < count; i++) {
    const per = Math.floor(endpoints / count) + (i < endpoints % count ? 1 : 0);
    const eps = [];
    for (let e = 0; e < per; e++) eps.push(endpoint(`10.${(i >> 8) & 255}.${i & 255}.${e + 1}`));
    list.push({ hostname: hostname(i), ports: [{ number: 8000 + (i % PORTS), name: 'http', protocol: 'HTTP' }], endpoints: eps, registries: [REGISTRY] });
  }
  for (let k = 1; k <= changes; k++) applyChange(list, k);
  return list;
}

/** Which service change k touches. */
export function changedService(count, k) {
  return (k * 7919) % count;
}

/** Change k: the first endpoint of one service moves to a new address. */
export function applyChange(list, k) {
  const i = changedService(list.length, k);
  const old = list[i];
  const eps = old.endpoints.length > 0 ? [endpoint(`172.16.${(k >> 8) & 255}.${k & 255}`), ...old.endpoints.slice(1)] : [endpoint(`172.16.${(k >> 8) & 255}.${k & 255}`)];
  list[i] = { ...old, endpoints: eps };
  return i;
}

export function registryState(list) {
  return { registry: REGISTRY, kind: 'file', services: list, synced: true, stale: false, diagnostics: [] };
}

export function catalog(list) {
  return mergeCatalog([registryState(list)]);
}

/** Scoped fleet: how many services each client's Sidecar declares. */
export const SCOPE_SIZE = 20;

/** The hostnames group g's Sidecar declares: 20 services, groups overlapping where there are fewer services than groups × 20. */
export function scopeHosts(count, g) {
  const hosts = new Set();
  for (let j = 0; j < Math.min(SCOPE_SIZE, count); j++) hosts.add(hostname((g * SCOPE_SIZE + j) % count));
  return [...hosts];
}

/** One Sidecar per group (selecting nodes labelled `group: <g>`), as the policy reader would hand them over. */
export function scopedPolicy(count, groups) {
  const sidecars = [];
  for (let g = 0; g < groups; g++) {
    sidecars.push({
      kind: 'Sidecar',
      name: `group-${g}`,
      namespace: 'default',
      labels: {},
      spec: { workloadSelector: { labels: { group: String(g) } }, egress: [{ hosts: scopeHosts(count, g).map((h) => `*/${h}`) }] },
      location: { source: 'bench', document: g },
    });
  }
  return { ...EMPTY_POLICY, sidecars };
}

/** Which group (Sidecar) client `vm-c` belongs to. */
export function groupOf(id, groups) {
  return Number(id.slice(id.lastIndexOf('-') + 1)) % groups;
}
