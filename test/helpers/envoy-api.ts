import { loadEnvoyApi } from '../../src/xds/protos.js';
import type { EnvoyApi } from '../../src/xds/protos.js';
import { encodedProblems, protoProblems } from './proto-check.js';

/** A resource a test packed or received breaks Envoy's API: the test fails where it happens, naming every problem. */
export class InvalidResourceError extends Error {
  constructor(
    readonly typeUrl: string,
    readonly problems: readonly string[],
  ) {
    super(`${typeUrl} does not satisfy Envoy's API:\n  ${problems.join('\n  ')}`);
    this.name = 'InvalidResourceError';
  }
}

/**
 * Envoy's API checking every resource it packs and unpacks: what tests build
 * snapshots with and decode responses with, so every resource a test
 * produces or receives is validated against Envoy's .proto files (field
 * names, enum values, cheap protoc-gen-validate rules, unknown fields on the
 * wire), not only those of the golden tests.
 */
export function validatingApi(api: EnvoyApi): EnvoyApi {
  return {
    ads: api.ads,
    csds: api.csds,
    sds: api.sds,
    pack(typeUrl, message) {
      const problems = protoProblems(typeUrl, message);
      if (problems.length > 0) throw new InvalidResourceError(typeUrl, problems);
      return api.pack(typeUrl, message);
    },
    unpack(any) {
      const problems = encodedProblems(any);
      if (problems.length > 0) throw new InvalidResourceError(any.type_url, problems);
      return api.unpack(any);
    },
  };
}

/** Envoy's API, built once per test file (vitest isolates files) and shared by its helpers; it validates what passes through it. */
export const envoyApi: EnvoyApi = validatingApi(loadEnvoyApi());
