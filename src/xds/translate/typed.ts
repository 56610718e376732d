import type { Any } from '../../generated/google/protobuf/Any.js';

/**
 * An Any in its readable form (`'@type'` beside the fields). It stays readable
 * in golden files and debug output; protobufjs packs it when encoding.
 */
export function typed(typeUrl: string, body: object): Any {
  return { '@type': typeUrl, ...body } as unknown as Any;
}

export const ADS_CONFIG_SOURCE = { ads: {}, resource_api_version: 'V3' } as const;

export function duration(ms: number): { seconds: string; nanos: number } {
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}
