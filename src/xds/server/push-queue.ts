/** Something the queue can ask to write out whatever it has pending. */
export interface Pushable {
  /**
   * Writes what is pending, then calls `done` once those writes have left the
   * process (at once if nothing was written, or if the stream is still busy
   * with earlier writes; it then queues itself again when they finish).
   */
  flush(done: () => void): void;
}

export interface PushQueueOptions {
  /** How many streams may have a push in flight at once. */
  readonly concurrency: number;
  /** A push that has not finished writing by then gives up its slot, so a stuck client holds nothing back. */
  readonly slotTimeoutMs: number;
}

/**
 * Streams with something to send wait here and are flushed with bounded
 * concurrency. A stream is queued at most once, however many snapshots
 * arrive meanwhile: it computes what to send when its turn comes, from the
 * newest snapshot, so intermediate versions are never queued.
 */
export class PushQueue {
  /** Insertion-ordered, so first queued is first served; a Set, so nothing is queued twice. */
  private readonly waiting = new Set<Pushable>();
  private active = 0;
  private pumping = false;

  constructor(private readonly options: PushQueueOptions) {}

  enqueue(stream: Pushable): void {
    this.waiting.add(stream);
    this.pump();
  }

  /** Forgets a stream that went away. */
  remove(stream: Pushable): void {
    this.waiting.delete(stream);
  }

  get queued(): number {
    return this.waiting.size;
  }

  get inFlight(): number {
    return this.active;
  }

  private pump(): void {
    if (this.pumping) return; // a synchronous `done` inside flush lands here; the loop below carries on
    this.pumping = true;
    try {
      while (this.active < this.options.concurrency && this.waiting.size > 0) {
        const stream = this.waiting.values().next().value!;
        this.waiting.delete(stream);
        this.active += 1;
        let released = false;
        let timer: NodeJS.Timeout | undefined;
        const release = () => {
          if (released) return;
          released = true;
          if (timer !== undefined) clearTimeout(timer);
          this.active -= 1;
          this.pump();
        };
        try {
          stream.flush(release);
        } catch {
          release();
        }
        if (!released) {
          timer = setTimeout(release, this.options.slotTimeoutMs);
          timer.unref();
        }
      }
    } finally {
      this.pumping = false;
    }
  }
}
