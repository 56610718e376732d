import type { ServerCallbacks } from '../xds/server/stream-state.js';

/** One set of server hooks that calls each given set in order; a throwing hook does not stop the others. */
export function combineCallbacks(...sets: readonly (ServerCallbacks | undefined)[]): ServerCallbacks {
  const present = sets.filter((s): s is ServerCallbacks => s !== undefined);
  const each =
    <K extends keyof ServerCallbacks>(key: K) =>
    (...args: Parameters<NonNullable<ServerCallbacks[K]>>): void => {
      for (const set of present) {
        const hook = set[key] as ((...a: typeof args) => void) | undefined;
        try {
          hook?.(...args);
        } catch {
          // A hook is an observer; its failure must never break a stream.
        }
      }
    };
  return {
    onStreamOpen: each('onStreamOpen'),
    onStreamClose: each('onStreamClose'),
    onResponse: each('onResponse'),
    onAck: each('onAck'),
    onNack: each('onNack'),
    onOrderingTimeout: each('onOrderingTimeout'),
    onLimitHit: each('onLimitHit'),
  } satisfies Required<ServerCallbacks>;
}
