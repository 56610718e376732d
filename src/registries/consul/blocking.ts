/**
 * Consul's documented rules for blocking queries ("Blocking Queries",
 * implementation details), kept pure so they are tested on their own.
 */

export interface IndexStep {
  /** The `index` to send with the next request. */
  readonly next: number;
  /** The index went backwards (snapshot restore, a server that lost its state): everything must be re-read. */
  readonly reset: boolean;
}

/**
 * - An index that goes backwards resets to 0, so the next request is a plain read.
 * - An index of 0, a missing header or garbage is never used as is: it becomes 1,
 *   which Consul answers at once, and the caller's rate limit keeps that from spinning.
 */
export function nextIndex(previous: number, header: string | undefined): IndexStep {
  const received = header === undefined || !/^\d+$/.test(header.trim()) ? 0 : Number(header.trim());
  if (received > 0 && received < previous) return { next: 0, reset: true };
  if (!Number.isSafeInteger(received) || received <= 0) return { next: 1, reset: false };
  return { next: received, reset: false };
}

/** True when the index moved forward, i.e. Consul says something may have changed. */
export function indexMoved(previous: number, step: IndexStep): boolean {
  return step.reset || step.next !== previous;
}

/** Exponential backoff with "equal jitter": half the delay is fixed, half random, capped at `maxMs`. */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/**
 * Spaces request starts at least `minIntervalMs` apart, so identical answers
 * coming back at once (a stuck index, an index of 0, fast churn) cannot spin the CPU.
 */
export class RequestPacer {
  private lastStart = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly minIntervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds to wait before the next request may start. */
  delay(): number {
    return Math.max(0, this.lastStart + this.minIntervalMs - this.now());
  }

  started(): void {
    this.lastStart = this.now();
  }
}
