/** Something the queue can ask to write out whatever it has pending. */
export interface Pushable {
  /**
   * Writes what is pending, then calls `done` once those writes have left the
   * process (at once if nothing was written, or if the stream is still busy
   * with earlier writes; it then queues itself again when they finish).
   * Returns how many bytes it wrote, if it knows.
   */
  flush(done: () => void): number | void;
}

export interface PushQueueOptions {
  /** How many streams may have a push in flight at once. */
  readonly concurrency: number;
  /** A push that has not finished writing by then gives up its slot, so a stuck client holds nothing back. */
  readonly slotTimeoutMs: number;
}

/** The shortest a proven stream's slot is held while it does not drain: timer and scheduling noise. */
const MIN_SLOT_MS = 50;

/**
 * A push this small to a proven stream does not hold a slot while it drains.
 * After an endpoint change each client gets one small response; when they
 * took turns in slots, the slots came back only after an event-loop turn, in
 * which the previous change's ACKs were read first (2,000 SotW ACKs of 40 KB),
 * so the last client heard of the change hundreds of ms later than the first.
 * A stream still writes one push at a time, so one that stops reading holds
 * at most this much.
 */
export const SMALL_PUSH_BYTES = 16 * 1024;

/**
 * Pushes run without an event-loop turn for at most this long; the rest
 * follow after one, so that with small pushes, which need no slot, health
 * checks and registry watches are not held up by a fleet of 10,000 clients.
 * Long enough for one change's pushes to 2,000 clients (about 45 ms) even when
 * a collection falls among them or the code is not yet optimised: what is
 * left for after the turn waits until the ACKs of every client pushed to
 * meanwhile have been read, about 100 ms more. At 50 ms the first two changes
 * after a connect storm always spilled over and took about 300 ms.
 */
export const PUMP_BUDGET_MS = 100;

/** The slowest a client without history is assumed to read, in bytes per ms (1 MiB/s). */
const ASSUMED_BYTES_PER_MS = 1024 * 1024 / 1000;

/**
 * Streams with something to send wait here and are flushed with bounded
 * concurrency. A stream is queued at most once, however many snapshots
 * arrive meanwhile: it computes what to send when its turn comes, from the
 * newest snapshot, so intermediate versions are never queued.
 *
 * A client that stops reading holds a slot until it times out, so a
 * thousand of them would hold every other client back by `slotTimeoutMs`
 * per `concurrency` of them. Two things keep that from happening:
 * - Lanes: a stream whose last push drained in time is "proven" and served
 *   first; others (new streams, and those whose last push timed out) may
 *   hold at most three quarters of the slots, so proven clients always find one.
 * - Patience follows the client's own pace: a proven stream's slot times out
 *   after four times its previous drain time (at least 50 ms), so a fast
 *   reader that suddenly stops reading gives its slot up within
 *   milliseconds. A stream with no history gets as long as its push would
 *   take at 1 MiB/s (a 200 KB push: 200 ms). Never longer than `slotTimeoutMs`.
 * A proven stream's push of at most `SMALL_PUSH_BYTES` gives its slot back as
 * soon as it is written, so one change reaches every client in one go.
 */
export class PushQueue {
  /** Insertion-ordered, so first queued is first served; Sets, so nothing is queued twice. */
  private readonly provenWaiting = new Set<Pushable>();
  private readonly otherWaiting = new Set<Pushable>();
  /** How long the latest push of a proven stream took to drain (ms); weak, so a closed stream is not kept. */
  private readonly drainMs = new WeakMap<Pushable, number>();
  private active = 0;
  private activeOthers = 0;
  private pumping = false;
  /** When pushes began in this event-loop turn; cleared (and the queue pumped again) by an immediate. */
  private turnStartedAt: number | undefined;
  private readonly otherSlots: number;

  constructor(private readonly options: PushQueueOptions) {
    // A quarter of the slots (at least one, unless there is only one) stays free for proven streams.
    const reserved = options.concurrency > 1 ? Math.max(1, Math.floor(options.concurrency / 4)) : 0;
    this.otherSlots = options.concurrency - reserved;
  }

  enqueue(stream: Pushable): void {
    if (this.provenWaiting.has(stream) || this.otherWaiting.has(stream)) return;
    (this.drainMs.has(stream) ? this.provenWaiting : this.otherWaiting).add(stream);
    this.pump();
  }

  /** Forgets a stream that went away. */
  remove(stream: Pushable): void {
    this.provenWaiting.delete(stream);
    this.otherWaiting.delete(stream);
  }

  get queued(): number {
    return this.provenWaiting.size + this.otherWaiting.size;
  }

  get inFlight(): number {
    return this.active;
  }

  private next(): { stream: Pushable; proven: boolean } | undefined {
    if (this.active >= this.options.concurrency) return undefined;
    if (this.provenWaiting.size > 0) return { stream: this.provenWaiting.values().next().value!, proven: true };
    if (this.otherWaiting.size > 0 && this.activeOthers < this.otherSlots) return { stream: this.otherWaiting.values().next().value!, proven: false };
    return undefined;
  }

  private pump(): void {
    if (this.pumping) return; // a synchronous `done` inside flush lands here; the loop below carries on
    this.pumping = true;
    try {
      for (let turn = this.next(); turn !== undefined && this.withinTurnBudget(); turn = this.next()) {
        const { stream, proven } = turn;
        (proven ? this.provenWaiting : this.otherWaiting).delete(stream);
        this.active += 1;
        if (!proven) this.activeOthers += 1;
        let released = false;
        let timer: NodeJS.Timeout | undefined;
        const started = performance.now();
        const previous = this.drainMs.get(stream);
        const freeSlot = (): boolean => {
          if (released) return false;
          released = true;
          if (timer !== undefined) clearTimeout(timer);
          this.active -= 1;
          if (!proven) this.activeOthers -= 1;
          return true;
        };
        const release = (drained: boolean) => {
          if (!freeSlot()) {
            // Drained after its slot was given up: it reads, so it stays in (or joins) the first lane.
            if (drained) this.drainMs.set(stream, performance.now() - started);
            return;
          }
          if (drained) this.drainMs.set(stream, performance.now() - started);
          else this.drainMs.delete(stream);
          this.pump();
        };
        let bytes: number | void = undefined;
        try {
          bytes = stream.flush(() => release(true));
        } catch {
          release(false);
        }
        if (!released && proven && typeof bytes === 'number' && bytes <= SMALL_PUSH_BYTES) {
          freeSlot();
          continue;
        }
        if (!released) {
          const expected = previous !== undefined ? 4 * previous : typeof bytes === 'number' ? bytes / ASSUMED_BYTES_PER_MS : this.options.slotTimeoutMs;
          const patience = Math.min(this.options.slotTimeoutMs, Math.max(MIN_SLOT_MS, expected));
          timer = setTimeout(() => release(false), patience);
          timer.unref();
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  private withinTurnBudget(): boolean {
    const now = performance.now();
    if (this.turnStartedAt === undefined) {
      this.turnStartedAt = now;
      setImmediate(() => {
        this.turnStartedAt = undefined;
        this.pump();
      });
      return true;
    }
    return now - this.turnStartedAt < PUMP_BUDGET_MS;
  }
}
