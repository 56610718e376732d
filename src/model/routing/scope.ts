import { byPrecedence } from '../../istio/documents.js';
import type { SidecarDocument } from '../../istio/policy-set.js';
import type { ServiceCatalog } from '../catalog.js';
import type { RoutingModel } from './types.js';

/** Where a Sidecar without a workloadSelector applies to every namespace, as in Istio's default root namespace. */
export const ROOT_NAMESPACE = 'istio-system';

/** What a node says about itself that a Sidecar selects on (Istio's node metadata NAMESPACE and LABELS). */
export interface ScopeSubject {
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** Which services' config a node receives; undefined everywhere means every service. */
export type HostFilter = (hostname: string) => boolean;

/**
 * The Sidecar that applies to a node, by Istio's order: one in the node's
 * namespace whose workloadSelector matches its labels, else that namespace's
 * Sidecar without a selector, else the root namespace's. Several candidates
 * at one level: the first by precedence wins, as Istio takes the oldest.
 */
export function selectSidecar(sidecars: readonly SidecarDocument[], subject: ScopeSubject): SidecarDocument | undefined {
  return sidecarSelector(sidecars)(subject);
}

/** Distinct (namespace, labels) a selector remembers before it starts afresh: nodes choose their labels, so what it keeps is bounded. */
const MAX_REMEMBERED_SUBJECTS = 10_000;

/**
 * `selectSidecar` over the same Sidecars for many nodes: they are sorted once,
 * and each distinct namespace and label set is looked up once (a fleet has a
 * few hundred of them, however many thousand nodes share them).
 */
export function sidecarSelector(sidecars: readonly SidecarDocument[]): (subject: ScopeSubject) => SidecarDocument | undefined {
  const sorted = [...sidecars].sort(byPrecedence);
  const remembered = new Map<string, SidecarDocument | undefined>();
  const select = (subject: ScopeSubject): SidecarDocument | undefined => {
    const selected = sorted.find(
      (s) =>
        s.namespace === subject.namespace &&
        s.spec.workloadSelector !== undefined &&
        Object.entries(s.spec.workloadSelector.labels).every(([key, value]) => subject.labels[key] === value),
    );
    return (
      selected ??
      sorted.find((s) => s.namespace === subject.namespace && s.spec.workloadSelector === undefined) ??
      sorted.find((s) => s.namespace === ROOT_NAMESPACE && s.spec.workloadSelector === undefined)
    );
  };
  if (sorted.length === 0) return () => undefined;
  return (subject) => {
    const key = subjectKey(subject);
    if (remembered.has(key)) return remembered.get(key);
    const sidecar = select(subject);
    if (remembered.size >= MAX_REMEMBERED_SUBJECTS) remembered.clear();
    remembered.set(key, sidecar);
    return sidecar;
  };
}

/**
 * A string equal for equal namespaces and label sets (JSON, so no label can
 * write a separator and read as another). Labels in another order give
 * another key, which costs a lookup, never a wrong answer; nodes' labels are
 * read in sorted order (node.ts), so sorting them again per node is not worth it.
 */
function subjectKey(subject: ScopeSubject): string {
  return JSON.stringify([subject.namespace, subject.labels]);
}

/**
 * The hosts a Sidecar's egress listeners name. meshbridge's registries have no
 * namespaces, so the namespace half of `namespace/host` selects every service
 * except `~`, which Istio defines as none. A Sidecar without egress imports
 * everything, as in Istio.
 */
export function sidecarHostFilter(sidecar: SidecarDocument): HostFilter | undefined {
  if (sidecar.spec.egress === undefined || sidecar.spec.egress.length === 0) return undefined;
  const exact = new Set<string>();
  const suffixes: string[] = [];
  let everything = false;
  for (const listener of sidecar.spec.egress) {
    for (const entry of listener.hosts) {
      const [namespace, host] = entry.split('/') as [string, string];
      if (namespace === '~') continue;
      if (host === '*') everything = true;
      else if (host.startsWith('*.')) suffixes.push(host.slice(1));
      else exact.add(host);
    }
  }
  if (everything) return undefined;
  return (hostname) => {
    const lower = hostname.toLowerCase();
    return exact.has(lower) || suffixes.some((suffix) => lower.endsWith(suffix));
  };
}

/**
 * The services a scoped node is sent, from the catalog: those its Sidecar
 * names, plus every service their routes send to or mirror to (Istio adds a
 * VirtualService's destinations too, or the routes would point at clusters the
 * node does not have); then only those `allowed` (security.access), and of
 * those only services whose routes stay inside the set, so a narrowed node is
 * never sent a route to a cluster it may not read. Pure.
 */
export function scopedHostnames(catalog: ServiceCatalog, routing: RoutingModel, declared: HostFilter | undefined, allowed: HostFilter | undefined): Set<string> {
  const destinations = destinationsByHost(routing);
  const hosts = new Set<string>();
  const pending = catalog.services.map((s) => s.hostname).filter((h) => declared === undefined || declared(h));
  while (pending.length > 0) {
    const host = pending.pop()!;
    if (hosts.has(host)) continue;
    hosts.add(host);
    for (const next of destinations.get(host) ?? []) if (!hosts.has(next)) pending.push(next);
  }
  if (allowed === undefined) return hosts;
  for (const host of [...hosts]) if (!allowed(host)) hosts.delete(host);
  // Leaving a service out can strand another's routes: repeat until every kept service's destinations are kept.
  let changed = true;
  while (changed) {
    changed = false;
    for (const host of [...hosts]) {
      if ([...(destinations.get(host) ?? [])].some((d) => !hosts.has(d))) {
        hosts.delete(host);
        changed = true;
      }
    }
  }
  return hosts;
}

/**
 * The name of a node's scope, the part of its view key after `~`: the Sidecar
 * that selects it (by namespace and name, so an edit of its hosts applies to
 * the view at once) and the security.access rule that names it (by index);
 * empty when nothing narrows it.
 */
export function scopeName(sidecar: SidecarDocument | undefined, accessRule: number, inboundNode?: string): string {
  const parts: string[] = [];
  if (sidecar !== undefined) parts.push(`sidecar:${sidecar.namespace}/${sidecar.name}`);
  if (accessRule >= 0) parts.push(`access:${accessRule}`);
  // The node id is the client's: escaped, so it cannot write a separator and read as another part.
  if (inboundNode !== undefined) parts.push(`${INBOUND_PART}:${encodeURIComponent(inboundNode)}`);
  return parts.join(',');
}

const INBOUND_PART = 'inbound';

/**
 * A scope without its inbound part (what nodes sharing a Sidecar and access
 * rule share: outbound clusters, listeners and routes), and the node whose
 * workloads the inbound part names.
 */
export function splitInboundScope(scope: string | undefined): { shared: string | undefined; inboundNode: string | undefined } {
  if (scope === undefined) return { shared: undefined, inboundNode: undefined };
  let inboundNode: string | undefined;
  const rest: string[] = [];
  for (const part of scope.split(',')) {
    if (part.startsWith(`${INBOUND_PART}:`)) {
      try {
        inboundNode = decodeURIComponent(part.slice(INBOUND_PART.length + 1));
      } catch {
        inboundNode = undefined;
      }
    } else rest.push(part);
  }
  return { shared: rest.length === 0 ? undefined : rest.join(','), inboundNode };
}

/**
 * What a scope name lets through: `declared` from the Sidecar it names (every
 * service when that Sidecar is gone: its nodes choose again when the policy
 * that removed it is applied, see XdsServer.rescope) and
 * `allowed` from the access rule. Fails closed: a part it cannot read allows nothing.
 */
export function scopeFilters(
  scope: string,
  sidecars: readonly SidecarDocument[],
  accessFilter: (rule: number) => HostFilter | undefined,
): { declared: HostFilter | undefined; allowed: HostFilter | undefined } {
  let declared: HostFilter | undefined;
  let allowed: HostFilter | undefined;
  for (const part of scope.split(',')) {
    const colon = part.indexOf(':');
    const kind = colon === -1 ? part : part.slice(0, colon);
    const name = part.slice(colon + 1);
    const rule = /^\d+$/.test(name) ? accessFilter(Number(name)) : undefined;
    if (kind === INBOUND_PART) continue; // adds the node's inbound side; narrows nothing
    if (kind === 'sidecar') {
      const sidecar = sidecars.find((s) => `${s.namespace}/${s.name}` === name);
      declared = sidecar === undefined ? undefined : sidecarHostFilter(sidecar);
    } else if (kind === 'access' && rule !== undefined) {
      allowed = rule;
    } else {
      allowed = () => false;
    }
  }
  return { declared, allowed };
}

/** The catalog with only `hosts`' services: what scoped translation reads. */
export function scopeCatalog(catalog: ServiceCatalog, hosts: ReadonlySet<string>): ServiceCatalog {
  return { ...catalog, services: catalog.services.filter((s) => hosts.has(s.hostname)) };
}

/** For each service, the other services its routes (targets and mirrors) send to. */
function destinationsByHost(routing: RoutingModel): Map<string, Set<string>> {
  const result = new Map<string, Set<string>>();
  for (const port of routing.ports.values()) {
    const names: string[] = [];
    collectClusterNames(port.routes, names);
    for (const name of names) {
      const target = routing.clusters.get(name)?.hostname;
      if (target === undefined || target === port.hostname) continue;
      let set = result.get(port.hostname);
      if (set === undefined) result.set(port.hostname, (set = new Set()));
      set.add(target);
    }
  }
  return result;
}

/** Every `cluster` string in a route model, whatever action holds it (weighted targets, mirrors). */
function collectClusterNames(value: unknown, into: string[]): void {
  if (Array.isArray(value)) {
    for (const item of value) collectClusterNames(item, into);
  } else if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      if (key === 'cluster' && typeof item === 'string') into.push(item);
      else collectClusterNames(item, into);
    }
  }
}
