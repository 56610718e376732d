import { setFlagsFromString } from 'node:v8';

/**
 * How much V8 lets the heap grow past what its last full collection left
 * live before it collects again, as a percentage. Left to itself V8 picks up
 * to 300 % when collections are cheap relative to the work done, which a
 * control plane's heap of long-lived snapshots makes them: with 2,000 clients
 * and 115 MiB live, the heap reached 450 MiB between collections, and peak
 * RSS 824 MiB. At 100 % the same run peaked at 469 MiB, for 0.8 s more CPU
 * in a 13 s connect storm (bench/README.md).
 */
export const HEAP_GROWING_PERCENT = 100;

/** Applies HEAP_GROWING_PERCENT; called first thing by `meshbridge run` (V8 reads it at every collection). */
export function limitHeapGrowth(): void {
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}

/**
 * glibc's allocator, as the systemd unit sets it (examples/vm/meshbridge.service)
 * and the benchmark runs the daemon: one arena, and freed memory above 64 KiB
 * at the top of the heap given back. Every response passes through malloc'd
 * buffers (a connect storm of 2,000 clients moves 1.6 GB), and with an arena
 * per thread and glibc's adaptive trim threshold the freed memory stayed
 * resident: peak RSS 613 MiB with only HEAP_GROWING_PERCENT, 469 MiB with both
 * (delta; 531 / 496 MiB state of the world). Read at process start, so it can
 * only come from the environment.
 */
export const MALLOC_ENVIRONMENT: Readonly<Record<string, string>> = {
  MALLOC_ARENA_MAX: '1',
  MALLOC_TRIM_THRESHOLD_: '65536',
};

/**
 * Node flags the daemon runs with: the packaged `/usr/bin/meshbridge`, `npm
 * start` and the benchmark pass them (V8 reads them when the heap is set up,
 * so they cannot be set from inside). A young generation of 32 MiB per
 * semi-space (Node's default is 16) holds most of a view rebuild (a change
 * translates every resource of the view again), so its garbage dies young
 * instead of being promoted mid-rebuild and collected by a full collection
 * every six to eight changes, each of which made that change some 120 ms
 * slower. 2,000 delta clients, 200 changes: p50 / p99 175 / 338 ms at 16 MiB,
 * 158 / 244 ms at 64 MiB, 168 / 246 ms at 32 MiB. 64 MiB cost the memory
 * that 32 does not: peak RSS 435 / 522 MiB (delta / state of the world) at
 * 64, 377 / 479 MiB at 32, because 2,000 state-of-the-world ACKs of 40 KB
 * after each change wait longer for a collection in a larger young generation.
 */
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32'];
