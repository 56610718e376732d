import type { ProxyView } from '../translate/translate.js';
import type { Snapshot } from './snapshot.js';

/** What a stream needs from the cache: the current snapshot of its view, and word when it changes. */
export interface SnapshotSource {
  get(view: ProxyView): Snapshot | undefined;
  /** Calls `listener` after every new snapshot; returns the function that stops the calls. */
  watch(listener: (view: ProxyView) => void): () => void;
}

export class SnapshotCache implements SnapshotSource {
  private readonly snapshots = new Map<ProxyView, Snapshot>();
  private readonly listeners = new Set<(view: ProxyView) => void>();

  get(view: ProxyView): Snapshot | undefined {
    return this.snapshots.get(view);
  }

  /** Stores the snapshot; returns false, and notifies nobody, when nothing in it changed. */
  set(snapshot: Snapshot): boolean {
    if (this.snapshots.get(snapshot.view)?.version === snapshot.version) return false;
    this.snapshots.set(snapshot.view, snapshot);
    for (const listener of [...this.listeners]) listener(snapshot.view);
    return true;
  }

  watch(listener: (view: ProxyView) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get watchCount(): number {
    return this.listeners.size;
  }
}
