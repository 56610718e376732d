import { isIP } from 'node:net';
import type { Diagnostic } from '../../errors.js';
import { TLS_LABEL } from '../../model/service.js';
import { compareEndpoints, compareStrings, endpointKey } from '../../model/catalog.js';
import type { Endpoint, HealthStatus, Protocol, Service, WorkloadIdentity } from '../../model/service.js';
import { SERVICE_ACCOUNT_KEY, registryIdentity } from '../workload-identity.js';
import type { EurekaInstance, EurekaStatus } from './eureka-json.js';

/**
 * Pure mapping from Eureka instances to catalog services (DESIGN.md, "Naming"
 * and "Health and locality"). No I/O, no clock.
 */

export type PortChoice = 'lowest' | 'most-common';

export interface EurekaMappingOptions {
  readonly registry: string;
  /** Appended to every hostname (`greeter` -> `greeter.<domain>`) when set. */
  readonly domain?: string | undefined;
  /** Locality region of every endpoint (Eureka has no region of its own); metadata `region` overrides. */
  readonly region: string;
  /** Protocol of a plain port when the instances do not say (metadata `protocol`). */
  readonly defaultProtocol: Protocol;
  readonly servicePort: PortChoice;
  /** Namespace of the instances' identities: `spiffe://<td>/ns/<namespace>/sa/<app or metadata service-account>`. */
  readonly namespace: string;
}

export interface MappedServices {
  readonly services: Service[];
  readonly diagnostics: Diagnostic[];
}

/** Label marking an endpoint dialled on its Eureka `securePort`: the endpoint itself speaks TLS. */

/** Metadata keys that name an instance's protocol: `protocol` (as for Consul) and `mesh.protocol`. */
const PROTOCOL_KEYS = ['protocol', 'mesh.protocol'] as const;

const PROTOCOL_NAMES: Readonly<Record<string, Protocol>> = {
  http: 'HTTP',
  http2: 'HTTP2',
  h2: 'HTTP2',
  h2c: 'HTTP2',
  grpc: 'GRPC',
  https: 'HTTPS',
  tls: 'TLS',
  tcp: 'TCP',
};

const HOSTNAME = /^[a-z0-9]([-a-z0-9_]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9_]*[a-z0-9])?)*$/;

/** UP -> HEALTHY; OUT_OF_SERVICE -> DRAINING; DOWN, STARTING, UNKNOWN or anything unparseable -> UNHEALTHY. */
export function eurekaHealth(status: EurekaStatus): HealthStatus {
  switch (status) {
    case 'UP':
      return 'HEALTHY';
    case 'OUT_OF_SERVICE':
      return 'DRAINING';
    default:
      return 'UNHEALTHY';
  }
}

/**
 * Hostnames of an instance: each comma-separated VIP address, lower-cased,
 * else the lower-cased app name; with the configured domain appended.
 */
export function eurekaHostnames(instance: EurekaInstance, domain?: string): { hostnames: string[]; invalid: string[] } {
  const vips = (instance.vipAddress ?? '')
    .split(',')
    .map((v) => v.trim().toLowerCase())
    .filter((v) => v !== '');
  const names = vips.length > 0 ? vips : [instance.app.toLowerCase()];
  const suffix = domain === undefined || domain === '' ? '' : `.${domain.toLowerCase().replace(/^\.+|\.+$/g, '')}`;
  const hostnames: string[] = [];
  const invalid: string[] = [];
  for (const name of names) {
    const hostname = `${name}${suffix}`;
    if (HOSTNAME.test(hostname)) {
      if (!hostnames.includes(hostname)) hostnames.push(hostname);
    } else invalid.push(name);
  }
  return { hostnames, invalid };
}

/** `[::1]` and `::1` are the same IPv6 address; EDS wants it bare. */
function bareAddress(address: string): string {
  const trimmed = address.trim();
  return trimmed.startsWith('[') && trimmed.endsWith(']') ? trimmed.slice(1, -1) : trimmed;
}

/** The IP to dial: `ipAddr`, else a `hostName` that is itself an IP. A DNS name would make EDS reject the whole assignment. */
export function instanceAddress(instance: EurekaInstance): string | undefined {
  for (const candidate of [instance.ipAddr, instance.hostName]) {
    const bare = bareAddress(candidate);
    if (bare !== '' && isIP(bare) !== 0) return bare;
  }
  return undefined;
}

/** The secure port when enabled (TLS to the endpoint), else the plain port when enabled. */
export function instancePort(instance: EurekaInstance): { port: number; tls: boolean } | undefined {
  const valid = (p: number) => Number.isInteger(p) && p >= 1 && p <= 65_535;
  if (instance.securePort?.enabled && valid(instance.securePort.port)) return { port: instance.securePort.port, tls: true };
  if (instance.port?.enabled && valid(instance.port.port)) return { port: instance.port.port, tls: false };
  return undefined;
}

export function declaredProtocol(instance: EurekaInstance): { protocol?: Protocol; invalid?: string } {
  for (const key of PROTOCOL_KEYS) {
    const raw = instance.metadata[key];
    if (raw === undefined || raw.trim() === '') continue;
    const protocol = PROTOCOL_NAMES[raw.trim().toLowerCase()];
    return protocol === undefined ? { invalid: raw } : { protocol };
  }
  return {};
}

/** Metadata `weight`, at least 1; Envoy rejects 0. */
function instanceWeight(instance: EurekaInstance): { weight: number; invalid?: string } {
  const raw = instance.metadata['weight'];
  if (raw === undefined) return { weight: 1 };
  const n = Number(raw.trim());
  if (!Number.isInteger(n) || n < 1) return { weight: 1, invalid: raw };
  return { weight: Math.min(n, 65_535) };
}

export function choosePort(ports: readonly number[], choice: PortChoice): number | undefined {
  if (ports.length === 0) return undefined;
  if (choice === 'lowest') return Math.min(...ports);
  const counts = new Map<number, number>();
  for (const p of ports) counts.set(p, (counts.get(p) ?? 0) + 1);
  return [...counts.entries()].sort(([pa, ca], [pb, cb]) => cb - ca || pa - pb)[0]![0];
}

function mostCommon<T extends string>(values: readonly T[]): T | undefined {
  const counts = new Map<T, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts.entries()].sort(([a, ca], [b, cb]) => cb - ca || compareStrings(a, b))[0]?.[0];
}

interface Usable {
  readonly instance: EurekaInstance;
  readonly address: string;
  readonly port: number;
  readonly tls: boolean;
  readonly protocol: Protocol | undefined;
  readonly weight: number;
  readonly identity: WorkloadIdentity | undefined;
}

/**
 * Every instance of a Eureka registry as catalog services: one service per VIP
 * address, its port the one its instances share (where they differ, the
 * lowest or the most common), every endpoint on the port it registered.
 * Unusable instances are skipped and reported, never guessed at.
 */
export function mapInstances(instances: readonly EurekaInstance[], options: EurekaMappingOptions): MappedServices {
  const source = `eureka:${options.registry}`;
  const diagnostics: Diagnostic[] = [];
  const warn = (instance: EurekaInstance, field: string, message: string) =>
    diagnostics.push({ severity: 'warning', source, field: `${instance.app}/${instance.id}${field ? `.${field}` : ''}`, message });

  const byHost = new Map<string, Usable[]>();
  const identityProblems = new Set<string>();
  const sorted = [...instances].sort((a, b) => compareStrings(a.app, b.app) || compareStrings(a.id, b.id));
  for (const instance of sorted) {
    const address = instanceAddress(instance);
    if (address === undefined) {
      warn(instance, 'ipAddr', `"${instance.ipAddr}" is not an IP address (nor is hostName "${instance.hostName}"); instance skipped`);
      continue;
    }
    const port = instancePort(instance);
    if (port === undefined) {
      warn(instance, 'port', 'neither port nor securePort is enabled; instance skipped');
      continue;
    }
    const declared = declaredProtocol(instance);
    if (declared.invalid !== undefined) {
      warn(instance, 'metadata.protocol', `unknown protocol "${declared.invalid}" (expected http, http2, grpc, https, tls or tcp); using the default`);
    }
    if (instance.status !== instance.rawStatus.trim().toUpperCase()) {
      warn(instance, 'status', `unknown status "${instance.rawStatus}"; treated as UNKNOWN (unhealthy)`);
    }
    const { identity, problem } = registryIdentity(options.namespace, instance.app, instance.metadata[SERVICE_ACCOUNT_KEY]);
    // Once per app and problem: a badly named app must not give one line per instance on every read.
    const problemKey = `${instance.app}\n${problem}`;
    if (problem !== undefined && !identityProblems.has(problemKey)) {
      identityProblems.add(problemKey);
      warn(instance, `metadata.${SERVICE_ACCOUNT_KEY}`, problem);
    }
    const { weight, invalid } = instanceWeight(instance);
    if (invalid !== undefined) warn(instance, 'metadata.weight', `weight "${invalid}" is not a whole number of at least 1; using 1`);
    const { hostnames, invalid: badNames } = eurekaHostnames(instance, options.domain);
    for (const name of badNames) warn(instance, 'vipAddress', `"${name}" is not a valid hostname; ignored`);
    const usable: Usable = { instance, address, port: port.port, tls: port.tls, protocol: declared.protocol, weight, identity };
    for (const hostname of hostnames) {
      const list = byHost.get(hostname);
      if (list === undefined) byHost.set(hostname, [usable]);
      else list.push(usable);
    }
  }

  const services: Service[] = [];
  for (const hostname of [...byHost.keys()].sort(compareStrings)) {
    const usable = byHost.get(hostname)!;
    const declaredProtocols = usable.map((u) => u.protocol).filter((p): p is Protocol => p !== undefined);
    // An instance on its secure port speaks TLS; with nothing declared that is HTTPS, as in Istio.
    const implied = usable.map((u) => u.protocol ?? (u.tls ? 'HTTPS' : options.defaultProtocol));
    const protocol = mostCommon(declaredProtocols.length > 0 ? declaredProtocols : implied)!;
    if (new Set(declaredProtocols).size > 1) {
      diagnostics.push({
        severity: 'warning',
        source,
        field: hostname,
        message: `instances declare different protocols (${[...new Set(declaredProtocols)].sort().join(', ')}); using ${protocol}`,
      });
    }
    const portName = protocol.toLowerCase();
    const endpoints = new Map<string, Endpoint>();
    for (const u of usable) {
      const endpoint = toEndpoint(u, portName, options);
      const key = endpointKey(endpoint);
      const existing = endpoints.get(key);
      if (existing !== undefined) {
        warn(u.instance, '', `same address and port as another instance of ${hostname}; only the first is kept`);
        continue;
      }
      endpoints.set(key, endpoint);
    }
    services.push({
      hostname,
      ports: [{ number: choosePort(usable.map((u) => u.port), options.servicePort)!, name: portName, protocol }],
      endpoints: [...endpoints.values()].sort(compareEndpoints),
      registries: [options.registry],
    });
  }
  return { services, diagnostics };
}

function toEndpoint(u: Usable, portName: string, options: EurekaMappingOptions): Endpoint {
  const { instance } = u;
  const labels: Record<string, string> = { ...instance.metadata };
  if (u.tls) labels[TLS_LABEL] = 'true';
  const zone = instance.dataCenterMetadata['availability-zone'] ?? instance.metadata['zone'] ?? '';
  return {
    address: u.address,
    ports: { [portName]: u.port },
    labels,
    locality: { region: instance.metadata['region'] ?? options.region, zone, subzone: '' },
    weight: u.weight,
    health: eurekaHealth(instance.status),
    registry: options.registry,
    ...(u.identity === undefined ? {} : { identity: u.identity }),
    // Eureka knows machines by hostName (Spring's eureka.instance.hostname); metadata `node` names the proxy otherwise.
    ...(nodeOf(instance) === undefined ? {} : { node: nodeOf(instance)! }),
  };
}

function nodeOf(instance: EurekaInstance): string | undefined {
  const node = instance.metadata['node'] ?? instance.hostName;
  return node === undefined || node === '' ? undefined : node;
}
