import type { Any } from '../../generated/google/protobuf/Any.js';

/**
 * An Any in its readable form (`'@type'` beside the fields). It stays readable
 * in golden files and debug output; protobufjs packs it when encoding.
 */
export function typed(typeUrl: string, body: object): Any {
  return { '@type': typeUrl, ...body } as unknown as Any;
}

export const ADS_CONFIG_SOURCE = { ads: {}, resource_api_version: 'V3' } as const;

/**
 * A google.protobuf.Duration, without the parts that are zero: proto3 leaves
 * a zero scalar off the wire, and so do Go's and C++'s encoders, but
 * protobufjs writes every field it is given (2 bytes each, on every route and
 * cluster of every client).
 */
export function duration(ms: number): { seconds?: string; nanos?: number } {
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms % 1000) * 1_000_000;
  return { ...(seconds !== 0 ? { seconds: String(seconds) } : {}), ...(nanos !== 0 ? { nanos } : {}) };
}
