/**
 * Hand-written protobuf encoding of the few xDS envelope messages the server
 * sends. Resources are encoded once per snapshot (see `Resource.wire`), so a
 * response to any number of clients is a concatenation of ready bytes rather
 * than a re-encoding of every resource for every client.
 *
 * Field numbers (envoy/service/discovery/v3/discovery.proto):
 *   DiscoveryResponse       version_info=1 resources=2 (Any) type_url=4 nonce=5
 *   DeltaDiscoveryResponse  system_version_info=1 resources=2 (Resource) type_url=4 nonce=5 removed_resources=6
 *   Resource                version=1 resource=2 (Any) name=3
 *   google.protobuf.Any     type_url=1 value=2
 *   ClusterLoadAssignment   cluster_name=1 (envoy/config/endpoint/v3/endpoint.proto)
 */

import { TypeUrl } from '../type-urls.js';

const WIRE_LEN = 2;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size += 1;
  }
  return size;
}

function writeVarint(buffer: Buffer, offset: number, n: number): number {
  while (n >= 0x80) {
    buffer[offset++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buffer[offset++] = n;
  return offset;
}

/** Collects length-delimited fields, then writes them into one buffer. */
export class MessageWriter {
  private readonly parts: { field: number; bytes: Buffer }[] = [];
  private size = 0;

  /** A string or bytes field; empty values are left out, as proto3 does. */
  bytes(field: number, value: string | Buffer): this {
    const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    if (bytes.length === 0) return this;
    this.parts.push({ field, bytes });
    this.size += varintSize((field << 3) | WIRE_LEN) + varintSize(bytes.length) + bytes.length;
    return this;
  }

  /** Bytes that are already one or more encoded fields (e.g. `Resource.wire.sotw`). */
  encoded(fields: Buffer): this {
    this.parts.push({ field: 0, bytes: fields });
    this.size += fields.length;
    return this;
  }

  /** The message as its pieces, for a writer that copies them into a buffer of its own (see EncodedMessage). */
  pieces(): EncodedMessage {
    const chunks: Buffer[] = [];
    for (const { field, bytes } of this.parts) {
      if (field === 0) {
        chunks.push(bytes);
        continue;
      }
      const headerSize = varintSize((field << 3) | WIRE_LEN) + varintSize(bytes.length);
      // Small fields (version, type URL, nonce, names) are joined with their header; large ones stay where they are.
      if (bytes.length <= 256) {
        const chunk = Buffer.allocUnsafe(headerSize + bytes.length);
        bytes.copy(chunk, writeVarint(chunk, writeVarint(chunk, 0, (field << 3) | WIRE_LEN), bytes.length));
        chunks.push(chunk);
      } else {
        const header = Buffer.allocUnsafe(headerSize);
        writeVarint(header, writeVarint(header, 0, (field << 3) | WIRE_LEN), bytes.length);
        chunks.push(header, bytes);
      }
    }
    return new EncodedMessage(chunks, this.size);
  }

  finish(): Buffer {
    const out = Buffer.allocUnsafe(this.size);
    let offset = 0;
    for (const { field, bytes } of this.parts) {
      if (field !== 0) {
        offset = writeVarint(out, offset, (field << 3) | WIRE_LEN);
        offset = writeVarint(out, offset, bytes.length);
      }
      bytes.copy(out, offset);
      offset += bytes.length;
    }
    return out;
  }
}

/**
 * An encoded message kept as the pieces it is made of. gRPC frames a message
 * by copying the serializer's result into a buffer of its own (5 bytes of
 * header, then `copy(output, 5)`), so a response handed over as pieces is
 * copied once, into that buffer, instead of joined here and then copied
 * again: a connect storm moves 1.6 GB, and the second copy, with its
 * allocation, was a tenth of the storm's CPU. It offers what that copy uses
 * (`byteLength`, `copy`); `join` gives an ordinary Buffer.
 */
export class EncodedMessage {
  constructor(
    private readonly chunks: readonly Buffer[],
    readonly byteLength: number,
  ) {}

  get length(): number {
    return this.byteLength;
  }

  /** As Buffer.copy: writes the message into `target` from `targetStart`; returns the bytes written. */
  copy(target: Uint8Array, targetStart = 0): number {
    let offset = targetStart;
    for (const chunk of this.chunks) offset += chunk.copy(target, offset);
    return offset - targetStart;
  }

  join(): Buffer {
    const out = Buffer.allocUnsafe(this.byteLength);
    this.copy(out);
    return out;
  }
}

/** One encoded field holding a message: tag, length, body. */
function asField(field: number, body: Buffer): Buffer {
  return new MessageWriter().bytes(field, body).finish();
}

/** `Any` for a resource. */
export function encodeAny(typeUrl: string, value: Buffer): Buffer {
  return new MessageWriter().bytes(1, typeUrl).bytes(2, value).finish();
}

/** A resource's entry in DiscoveryResponse.resources (field 2, an Any). */
export function sotwEntry(any: Buffer): Buffer {
  return asField(2, any);
}

/**
 * A DiscoveryResponse entry holding a ClusterLoadAssignment with no endpoints
 * (only its cluster_name): how a state-of-the-world response says
 * that a cluster's endpoints are gone, since leaving an EDS resource out of
 * one says nothing.
 */
export function emptyAssignmentEntry(clusterName: string): Buffer {
  return sotwEntry(encodeAny(TypeUrl.ClusterLoadAssignment, new MessageWriter().bytes(1, clusterName).finish()));
}

/** A resource's entry in DeltaDiscoveryResponse.resources (field 2, a Resource). */
export function deltaEntry(name: string, version: string, any: Buffer): Buffer {
  return asField(2, new MessageWriter().bytes(1, version).bytes(2, any).bytes(3, name).finish());
}

export function encodeDiscoveryResponse(r: { version: string; typeUrl: string; nonce: string; entries: readonly Buffer[] }): EncodedMessage {
  const writer = new MessageWriter().bytes(1, r.version);
  for (const entry of r.entries) writer.encoded(entry);
  return writer.bytes(4, r.typeUrl).bytes(5, r.nonce).pieces();
}

export function encodeDeltaDiscoveryResponse(r: {
  systemVersion: string;
  typeUrl: string;
  nonce: string;
  entries: readonly Buffer[];
  removed: readonly string[];
}): EncodedMessage {
  const writer = new MessageWriter().bytes(1, r.systemVersion);
  for (const entry of r.entries) writer.encoded(entry);
  writer.bytes(4, r.typeUrl).bytes(5, r.nonce);
  for (const name of r.removed) writer.bytes(6, name);
  return writer.pieces();
}
