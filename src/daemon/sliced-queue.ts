/**
 * Work run a slice per event-loop turn: as much as fits in `budgetMs` (at
 * least one item), the rest in the turns after. A burst of it (the views of
 * fifty Sidecar groups wanted by a fleet connecting at once, about 8 ms
 * each) then never holds for long the loop where connections are accepted
 * and requests read. An item added again before it ran runs once.
 */
export class SlicedQueue<T> {
  private readonly items = new Set<T>();
  private scheduled = false;

  constructor(
    private readonly run: (item: T) => void,
    private readonly budgetMs: number,
  ) {}

  add(item: T): void {
    this.items.add(item);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.runSlice());
  }

  /** Items waiting for a turn. */
  get size(): number {
    return this.items.size;
  }

  private runSlice(): void {
    const started = performance.now();
    try {
      for (const item of this.items) {
        this.items.delete(item);
        this.run(item);
        if (performance.now() - started >= this.budgetMs) break;
      }
    } finally {
      // An item that throws leaves the rest to the next turn rather than stranded.
      if (this.items.size > 0) setImmediate(() => this.runSlice());
      else this.scheduled = false;
    }
  }
}
