import picomatch from 'picomatch';
import protobuf from 'protobufjs';
import { encodeAny } from '../xds/cache/wire.js';
import type { EnvoyApi } from '../xds/protos.js';
import { TypeUrl } from '../xds/type-urls.js';

export interface AccessRule {
  /** Node ids or globs (`web-*`). */
  readonly nodes: readonly string[];
  /** Service hostnames or globs (`*.payments.mesh`) the matching nodes may read. */
  readonly services: readonly string[];
}

/** Which services a node may read: undefined means every service (no rule names it). */
export type ServiceFilter = (hostname: string) => boolean;

/** The first rule whose nodes match `nodeId` decides; a node no rule names reads everything. */
export function serviceFilterFor(rules: readonly AccessRule[], nodeId: string): ServiceFilter | undefined {
  const rule = rules.find((r) => r.nodes.some((pattern) => picomatch.isMatch(nodeId, pattern, { dot: true })));
  if (rule === undefined) return undefined;
  const matchers = rule.services.map((pattern) => picomatch(pattern.toLowerCase(), { dot: true }));
  return (hostname) => matchers.some((match) => match(hostname.toLowerCase()));
}

interface AnyMessage {
  type_url: string;
  value: Buffer;
}

/** One field of an encoded message: where it starts and ends, and a length-delimited field's body. */
interface WireField {
  readonly field: number;
  readonly raw: Buffer;
  readonly body?: Buffer;
}

/** The top-level fields of an encoded message, in order, without decoding them. */
function wireFields(message: Buffer): WireField[] {
  const reader = protobuf.Reader.create(message);
  const fields: WireField[] = [];
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const tag = reader.uint32();
    const wireType = tag & 7;
    let body: Buffer | undefined;
    if (wireType === 2) {
      const length = reader.uint32();
      body = message.subarray(reader.pos, reader.pos + length);
      reader.skip(length);
    } else {
      reader.skipType(wireType);
    }
    fields.push({ field: tag >>> 3, raw: message.subarray(start, reader.pos), ...(body === undefined ? {} : { body }) });
  }
  return fields;
}

/** The first occurrence of a string field; stops reading there (a name comes first in every resource). */
function stringField(message: Buffer, field: number): string | undefined {
  const reader = protobuf.Reader.create(message);
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag >>> 3 === field && (tag & 7) === 2) return reader.string();
    reader.skipType(tag & 7);
  }
  return undefined;
}

/** A length-delimited field, encoded. */
function lengthDelimited(field: number, body: Buffer): Buffer {
  const writer = protobuf.Writer.create();
  writer.uint32((field << 3) | 2).bytes(body);
  return Buffer.from(writer.finish());
}

/**
 * The service a resource belongs to, from meshbridge's names (src/xds/translate/names.ts):
 * clusters and endpoints `outbound|port|subset|host`, proxyless listeners and
 * routes `host[:port]`. Undefined for what is shared by several services
 * (a sidecar's per-port listener and route), which is filtered inside.
 */
export function serviceOfResource(typeUrl: string, name: string): string | undefined {
  if (name.startsWith('outbound|')) return name.split('|')[3];
  if (typeUrl === TypeUrl.Listener || typeUrl === TypeUrl.RouteConfiguration) {
    if (/^[^_]+_\d+$/.test(name) || /^\d+$/.test(name)) return undefined;
    return name.replace(/:\d+$/, '');
  }
  return undefined;
}

/**
 * Narrows xDS responses to the services a node may read. Responses arrive
 * encoded (once per snapshot for every client); the narrowing reads only each
 * resource's name from the wire, copies the bytes of what is kept, and decodes
 * only the few resources several services share (a sidecar's per-port listener
 * and route), so a narrowed stream costs little more than an open one.
 */
export class ResponseNarrower {
  constructor(
    private readonly api: EnvoyApi,
    private readonly allowed: ServiceFilter,
  ) {}

  /** DiscoveryResponse: resources=2 (Any), type_url=4. */
  sotw(bytes: Buffer): Buffer {
    const fields = wireFields(bytes);
    const typeUrl = fields.find((f) => f.field === 4)?.body?.toString('utf8') ?? '';
    const parts = fields.flatMap((f) => {
      if (f.field !== 2 || f.body === undefined) return [f.raw];
      const kept = this.narrow(typeUrl, f.body);
      return kept === undefined ? [] : [kept === f.body ? f.raw : lengthDelimited(2, kept)];
    });
    return Buffer.concat(parts);
  }

  /** DeltaDiscoveryResponse: resources=2 (Resource: resource=2 (Any), name=3), type_url=4. */
  delta(bytes: Buffer): Buffer {
    const fields = wireFields(bytes);
    const typeUrl = fields.find((f) => f.field === 4)?.body?.toString('utf8') ?? '';
    const parts = fields.flatMap((f) => {
      if (f.field !== 2 || f.body === undefined) return [f.raw];
      const entry = wireFields(f.body);
      const any = entry.find((e) => e.field === 2)?.body;
      if (any === undefined) return [f.raw];
      const kept = this.narrow(typeUrl, any, entry.find((e) => e.field === 3)?.body?.toString('utf8'));
      if (kept === undefined) return [];
      if (kept === any) return [f.raw];
      return [lengthDelimited(2, Buffer.concat(entry.map((e) => (e.field === 2 ? lengthDelimited(2, kept) : e.raw))))];
    });
    return Buffer.concat(parts);
  }

  /** The encoded Any as this node may see it (the same buffer when unchanged), or undefined to leave it out. */
  private narrow(typeUrl: string, anyBytes: Buffer, knownName?: string): Buffer | undefined {
    const value = wireFields(anyBytes).find((f) => f.field === 2)?.body ?? Buffer.alloc(0);
    // Cluster.name, ClusterLoadAssignment.cluster_name, Listener.name and RouteConfiguration.name are all field 1.
    const name = knownName ?? stringField(value, 1) ?? '';
    const service = serviceOfResource(typeUrl, name);
    if (service !== undefined) return this.allowed(service) ? anyBytes : undefined;
    if (typeUrl === TypeUrl.RouteConfiguration) {
      const resource = this.api.unpack({ type_url: typeUrl, value });
      const virtualHosts = (resource['virtual_hosts'] as { name?: string }[] | undefined) ?? [];
      const kept = virtualHosts.filter((vh) => this.allowed(String(vh.name ?? '').replace(/:\d+$/, '')));
      if (kept.length === virtualHosts.length) return anyBytes;
      return encodeAny(typeUrl, this.api.pack(typeUrl, { ...resource, virtual_hosts: kept }).value);
    }
    if (typeUrl === TypeUrl.Listener) {
      // A sidecar's TCP listener proxies to one cluster: it goes with that cluster's service.
      const clusters = this.tcpProxyClusters(this.api.unpack({ type_url: typeUrl, value }));
      if (clusters.length > 0 && !clusters.some((c) => this.allowed(c.split('|')[3] ?? ''))) return undefined;
    }
    return anyBytes;
  }
  private tcpProxyClusters(listener: Record<string, unknown>): string[] {
    const chains = (listener['filter_chains'] as { filters?: { typed_config?: AnyMessage }[] }[] | undefined) ?? [];
    return chains.flatMap((chain) =>
      (chain.filters ?? []).flatMap((filter) => {
        if (filter.typed_config?.type_url !== TypeUrl.TcpProxy) return [];
        const cluster = this.api.unpack(filter.typed_config)['cluster'];
        return typeof cluster === 'string' ? [cluster] : [];
      }),
    );
  }
}
