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
