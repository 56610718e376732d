import { isIP } from 'node:net';
import type { Diagnostic } from '../../errors.js';
import { compareEndpoints, compareStrings, endpointKey } from '../../model/catalog.js';
import type { Endpoint, HealthStatus, Protocol, Service } from '../../model/service.js';
import { SERVICE_ACCOUNT_KEY, registryIdentity } from '../workload-identity.js';
import type { ConsulHealthCheck, ConsulServiceEntry } from './consul-types.js';

/**
 * Pure mapping from Consul's `/v1/health/service/<name>` entries to a catalog
 * Service. No I/O, no clock: every decision here is table-tested.
 */

export type WarningMapping = 'weight' | 'degraded';
export type PortChoice = 'lowest' | 'most-common';

export interface ConsulMappingOptions {
  readonly registry: string;
  /** Datacenter the entries come from. */
  readonly datacenter: string;
  /** The agent's own datacenter: its services get the short `<name>.service.<domain>` hostname. */
  readonly localDatacenter: string;
  readonly domain: string;
  /** Undefined: not configured (TCP, marked undeclared so proxyless clients get it as gRPC). */
  readonly defaultProtocol?: Protocol | undefined;
  readonly warning: WarningMapping;
  readonly servicePort: PortChoice;
  /** Prefer this tagged address (`lan`, `wan`, `lan_ipv6`, ...) over `Service.Address`/`Node.Address`. */
  readonly taggedAddress?: string | undefined;
  /** Namespace of the instances' identities: `spiffe://<td>/ns/<namespace>/sa/<service or meta service-account>`. */
  readonly namespace: string;
}

export type AggregateStatus = 'passing' | 'warning' | 'critical' | 'maintenance';

const NODE_MAINTENANCE_CHECK = '_node_maintenance';
const SERVICE_MAINTENANCE_PREFIX = '_service_maintenance:';

/** Services of these kinds are mesh machinery, not endpoints an application dials. */
export function isPlainService(kind: string | undefined): boolean {
  return kind === undefined || kind === '' || kind === 'typical';
}

/** `<service>.service.<domain>` in the local datacenter, `<service>.service.<dc>.<domain>` elsewhere; lower case. */
export function consulHostname(service: string, datacenter: string, localDatacenter: string, domain: string): string {
  const dc = datacenter === localDatacenter ? '' : `.${datacenter}`;
  return `${service}.service${dc}.${domain}`.toLowerCase();
}

/**
 * Every check of an instance, node checks included, folded the way Consul
 * itself reads them: maintenance beats everything, then critical, warning, passing.
 * An unknown status counts as critical. No checks at all is passing.
 */
export function aggregateChecks(checks: readonly ConsulHealthCheck[]): AggregateStatus {
  let worst: AggregateStatus = 'passing';
  const rank: Record<AggregateStatus, number> = { passing: 0, warning: 1, critical: 2, maintenance: 3 };
  for (const check of checks) {
    let status: AggregateStatus;
    if (check.CheckID === NODE_MAINTENANCE_CHECK || check.CheckID.startsWith(SERVICE_MAINTENANCE_PREFIX)) status = 'maintenance';
    else if (check.Status === 'passing' || check.Status === 'warning' || check.Status === 'critical' || check.Status === 'maintenance') {
      status = check.Status;
    } else status = 'critical';
    if (rank[status] > rank[worst]) worst = status;
  }
  return worst;
}

/** Health and load-balancing weight of one instance (DESIGN.md, "Health and locality"). */
export function instanceHealth(entry: ConsulServiceEntry, warning: WarningMapping): { health: HealthStatus; weight: number } {
  const status = aggregateChecks(entry.Checks ?? []);
  const passingWeight = clampWeight(entry.Service.Weights?.Passing);
  switch (status) {
    case 'passing':
      return { health: 'HEALTHY', weight: passingWeight };
    case 'warning':
      return warning === 'degraded'
        ? { health: 'DEGRADED', weight: passingWeight }
        : { health: 'HEALTHY', weight: clampWeight(entry.Service.Weights?.Warning) };
    case 'critical':
    case 'maintenance':
      return { health: 'UNHEALTHY', weight: passingWeight };
  }
}

/** Envoy wants weights of at least 1; Consul allows 0 for warning and defaults both to 1. */
function clampWeight(weight: number | undefined): number {
  if (weight === undefined || !Number.isFinite(weight)) return 1;
  return Math.min(Math.max(Math.trunc(weight), 1), 65_535);
}

const TAGGED_ALIASES: Record<string, readonly string[]> = {
  lan: ['lan', 'lan_ipv4'],
  lan_ipv4: ['lan_ipv4', 'lan'],
  wan: ['wan', 'wan_ipv4'],
  wan_ipv4: ['wan_ipv4', 'wan'],
};

/** `[::1]` and `::1` both name the same IPv6 address; EDS wants it bare. */
function bareAddress(address: string): string {
  const trimmed = address.trim();
  return trimmed.startsWith('[') && trimmed.endsWith(']') ? trimmed.slice(1, -1) : trimmed;
}

/**
 * The address and port an instance is dialled on. With a tagged address
 * configured, the service's tagged address (which has its own port) wins, then
 * the node's (`lan` and `lan_ipv4` are the same tag spelled two ways); otherwise
 * `Service.Address`, falling back to `Node.Address` when it is empty.
 */
export function instanceAddress(entry: ConsulServiceEntry, taggedAddress?: string): { address: string; port: number } {
  const service = entry.Service;
  let address = service.Address ?? '';
  let port = service.Port ?? 0;
  if (taggedAddress !== undefined && taggedAddress !== '') {
    const keys = TAGGED_ALIASES[taggedAddress] ?? [taggedAddress];
    const fromService = keys.map((k) => service.TaggedAddresses?.[k]).find((t) => t?.Address);
    const fromNode = keys.map((k) => entry.Node.TaggedAddresses?.[k]).find((t) => t !== undefined && t !== '');
    if (fromService?.Address) {
      address = fromService.Address;
      if (fromService.Port) port = fromService.Port;
    } else if (fromNode !== undefined) {
      address = fromNode;
    }
  }
  if (address === '') address = entry.Node.Address ?? '';
  return { address: bareAddress(address), port };
}

/** Tags of the form `key=value` and every `Service.Meta` entry; meta wins over a tag with the same key. */
export function instanceLabels(entry: ConsulServiceEntry): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const tag of entry.Service.Tags ?? []) {
    const eq = tag.indexOf('=');
    if (eq > 0) labels[tag.slice(0, eq)] = tag.slice(eq + 1);
  }
  for (const [key, value] of Object.entries(entry.Service.Meta ?? {})) {
    if (typeof value === 'string') labels[key] = value;
  }
  return labels;
}

const PROTOCOL_NAMES: Record<string, Protocol> = {
  http: 'HTTP',
  http2: 'HTTP2',
  grpc: 'GRPC',
  https: 'HTTPS',
  tls: 'TLS',
  tcp: 'TCP',
};

/** Meta `protocol` (Consul's own key for it), else a `protocol=<p>` tag; undefined when neither is set. */
export function declaredProtocol(entry: ConsulServiceEntry): { protocol?: Protocol; invalid?: string } {
  const raw = entry.Service.Meta?.['protocol'] ?? instanceLabels(entry)['protocol'];
  if (raw === undefined || raw === '') return {};
  const protocol = PROTOCOL_NAMES[raw.toLowerCase()];
  return protocol === undefined ? { invalid: raw } : { protocol };
}

/** The service port: the one every instance shares, else the lowest (or the most common, ties to the lowest). */
export function choosePort(ports: readonly number[], choice: PortChoice): number | undefined {
  if (ports.length === 0) return undefined;
  if (choice === 'lowest') return Math.min(...ports);
  const counts = new Map<number, number>();
  for (const p of ports) counts.set(p, (counts.get(p) ?? 0) + 1);
  let best: number | undefined;
  for (const [port, count] of counts) {
    const bestCount = best === undefined ? -1 : counts.get(best)!;
    if (count > bestCount || (count === bestCount && port < best!)) best = port;
  }
  return best;
}

function mostCommon<T extends string>(values: readonly T[]): T | undefined {
  const counts = new Map<T, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1] || compareStrings(a[0], b[0]))[0]?.[0];
}

export interface MappedService {
  /** Undefined when no instance is usable (all skipped kinds, bad addresses, or none at all). */
  readonly service: Service | undefined;
  readonly diagnostics: readonly Diagnostic[];
  /** Nodes the instances run on, so a node check change can find the services it affects. */
  readonly nodes: readonly string[];
}

/** Maps every instance of one Consul service in one datacenter to a catalog Service. */
export function mapService(name: string, entries: readonly ConsulServiceEntry[], options: ConsulMappingOptions): MappedService {
  const source = `consul:${options.registry}/${options.datacenter}`;
  const diagnostics: Diagnostic[] = [];
  const nodes = new Set<string>();
  interface Usable {
    readonly entry: ConsulServiceEntry;
    readonly address: string;
    readonly port: number;
    readonly protocol: Protocol | undefined;
  }
  const usable: Usable[] = [];
  const sorted = [...entries].sort(
    (a, b) => compareStrings(a.Node?.Node ?? '', b.Node?.Node ?? '') || compareStrings(a.Service?.ID ?? '', b.Service?.ID ?? ''),
  );
  for (const entry of sorted) {
    if (entry.Node === undefined || entry.Service === undefined) continue;
    nodes.add(entry.Node.Node);
    if (!isPlainService(entry.Service.Kind)) continue;
    const field = `services.${name}.instances.${entry.Node.Node}/${entry.Service.ID}`;
    const { address, port } = instanceAddress(entry, options.taggedAddress);
    if (isIP(address) === 0) {
      diagnostics.push({
        severity: 'warning',
        source,
        field,
        message: `address "${address}" is not an IP address (EDS accepts only IPs); instance skipped`,
      });
      continue;
    }
    if (!Number.isInteger(port) || port < 1 || port > 65_535) {
      diagnostics.push({ severity: 'warning', source, field, message: `port ${port} is not a usable port; instance skipped` });
      continue;
    }
    const declared = declaredProtocol(entry);
    if (declared.invalid !== undefined) {
      diagnostics.push({
        severity: 'warning',
        source,
        field: `${field}.protocol`,
        message: `unknown protocol "${declared.invalid}" (expected http, http2, grpc, https, tls or tcp); using the default`,
      });
    }
    usable.push({ entry, address, port, protocol: declared.protocol });
  }
  if (usable.length === 0) return { service: undefined, diagnostics, nodes: [...nodes].sort(compareStrings) };

  const declaredProtocols = usable.map((u) => u.protocol).filter((p): p is Protocol => p !== undefined);
  const declared = mostCommon(declaredProtocols);
  const protocol = declared ?? options.defaultProtocol ?? 'TCP';
  const protocolFrom =
    declared !== undefined
      ? 'declared by its instances (meta or tag protocol)'
      : options.defaultProtocol !== undefined
        ? `defaultProtocol of registry ${options.registry}`
        : 'not declared (no protocol meta or tag, no defaultProtocol): TCP for Envoy, gRPC for clients that dial it by name';
  if (new Set(declaredProtocols).size > 1) {
    diagnostics.push({
      severity: 'warning',
      source,
      field: `services.${name}.protocol`,
      message: `instances declare different protocols (${[...new Set(declaredProtocols)].sort().join(', ')}); using ${protocol}`,
    });
  }
  const portNumber = choosePort(
    usable.map((u) => u.port),
    options.servicePort,
  )!;
  const portName = protocol.toLowerCase();
  const locality = (entry: ConsulServiceEntry) => ({
    region: options.datacenter,
    zone: entry.Node.Meta?.['zone'] ?? '',
    subzone: '',
  });

  const endpoints = new Map<string, Endpoint>();
  const identityProblems = new Set<string>();
  for (const u of usable) {
    const { health, weight } = instanceHealth(u.entry, options.warning);
    const { identity, problem } = registryIdentity(options.namespace, name, u.entry.Service.Meta?.[SERVICE_ACCOUNT_KEY]);
    // Reported once per service and problem: a badly named service must not flood the log with one line per instance.
    if (problem !== undefined && !identityProblems.has(problem)) {
      identityProblems.add(problem);
      diagnostics.push({
        severity: 'warning',
        source,
        field: `services.${name}.instances.${u.entry.Node.Node}/${u.entry.Service.ID}.meta.${SERVICE_ACCOUNT_KEY}`,
        message: problem,
      });
    }
    const endpoint: Endpoint = {
      address: u.address,
      ports: { [portName]: u.port },
      labels: instanceLabels(u.entry),
      locality: locality(u.entry),
      weight,
      health,
      registry: options.registry,
      ...(identity === undefined ? {} : { identity }),
      node: u.entry.Node.Node,
    };
    const key = endpointKey(endpoint);
    if (!endpoints.has(key)) endpoints.set(key, endpoint);
  }
  const service: Service = {
    hostname: consulHostname(name, options.datacenter, options.localDatacenter, options.domain),
    ports: [{ number: portNumber, name: portName, protocol, protocolFrom, ...(declared === undefined && options.defaultProtocol === undefined ? { protocolUndeclared: true as const } : {}) }],
    endpoints: [...endpoints.values()].sort(compareEndpoints),
    registries: [options.registry],
  };
  return { service, diagnostics, nodes: [...nodes].sort(compareStrings) };
}
