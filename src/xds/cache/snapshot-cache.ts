import type { ProxyView } from '../translate/translate.js';
import type { XdsTypeUrl } from '../type-urls.js';
import type { Snapshot } from './snapshot.js';

/**
 * Snapshots kept per view besides the current one. A state-of-the-world client
 * moving from another replica resumes with the version it last accepted, a
 * content hash equal on every replica; when that version is among these, it
 * is sent only what changed since instead of everything (see SotwStream). A
 * replica it moves to is at most a change or two ahead of the one it left.
 * Old snapshots share every unchanged resource with the current one, so the
 * cost is their maps: some 64 KB each for a view of 1,000 services, which
 * every node in front of workloads has of its own (2,000 agents, 4 kept:
 * about 0.6 GB less than with 8).
 */
export const SNAPSHOT_HISTORY = 4;

/** What a stream needs from the cache: the current snapshot of its view, and word when it changes. */
export interface SnapshotSource {
  /** The view's snapshot, or undefined until one is stored; never builds one. */
  get(view: ProxyView): Snapshot | undefined;
  /** Calls `listener` after every new snapshot; returns the function that stops the calls. */
  watch(listener: (view: ProxyView) => void): () => void;
  /** A recent snapshot of the view (the current one included) whose `typeUrl` resources have `version`, if one is still kept. */
  withTypeVersion(view: ProxyView, typeUrl: XdsTypeUrl, version: string): Snapshot | undefined;
}

/**
 * Snapshots by view. Storing only: whoever owns the views (the daemon) builds
 * them, so fetching a snapshot never runs a translation inside a stream's
 * push. A view asked for that has no snapshot yet is recorded and announced
 * once to `onWanted` listeners, which build it and `set` it; the asking
 * streams are woken by `watch` then.
 */
export class SnapshotCache implements SnapshotSource {
  private readonly snapshots = new Map<ProxyView, Snapshot>();
  /** Per view, the snapshots it had before the current one, newest last; at most SNAPSHOT_HISTORY. */
  private readonly history = new Map<ProxyView, Snapshot[]>();
  private readonly listeners = new Set<(view: ProxyView) => void>();
  private readonly wantedListeners = new Set<(view: ProxyView) => void>();
  /** Views asked for, whether or not they could be built yet, so the next rebuild includes them. */
  private readonly wanted = new Set<ProxyView>();

  get(view: ProxyView): Snapshot | undefined {
    const snapshot = this.snapshots.get(view);
    if (snapshot === undefined && !this.wanted.has(view)) {
      this.wanted.add(view);
      for (const listener of [...this.wantedListeners]) listener(view);
    }
    return snapshot;
  }

  /** The current snapshot of a view, without recording that anyone wants it. */
  peek(view: ProxyView): Snapshot | undefined {
    return this.snapshots.get(view);
  }

  /** Calls `listener` when a view without a snapshot is first asked for; returns the function that stops the calls. */
  onWanted(listener: (view: ProxyView) => void): () => void {
    this.wantedListeners.add(listener);
    return () => this.wantedListeners.delete(listener);
  }

  /** Every view served or asked for: the ones to rebuild when the catalog changes. */
  views(): ProxyView[] {
    return [...new Set([...this.snapshots.keys(), ...this.wanted])];
  }

  /**
   * Forgets every view not in `inUse`: a locality whose last client left
   * costs neither memory nor rebuilds. A client from there later gets its view
   * built again on first use.
   */
  retain(inUse: ReadonlySet<ProxyView>): ProxyView[] {
    const dropped = this.views().filter((view) => !inUse.has(view));
    for (const view of dropped) {
      this.snapshots.delete(view);
      this.history.delete(view);
      this.wanted.delete(view);
    }
    return dropped;
  }

  /** Stores the snapshot; returns false, and notifies nobody, when nothing in it changed. */
  set(snapshot: Snapshot): boolean {
    const replaced = this.snapshots.get(snapshot.view);
    if (replaced?.version === snapshot.version) return false;
    if (replaced !== undefined) {
      let kept = this.history.get(snapshot.view);
      if (kept === undefined) this.history.set(snapshot.view, (kept = []));
      kept.push(replaced);
      if (kept.length > SNAPSHOT_HISTORY) kept.shift();
    }
    this.snapshots.set(snapshot.view, snapshot);
    for (const listener of [...this.listeners]) listener(snapshot.view);
    return true;
  }

  withTypeVersion(view: ProxyView, typeUrl: XdsTypeUrl, version: string): Snapshot | undefined {
    const current = this.snapshots.get(view);
    if (current?.typeVersions.get(typeUrl) === version) return current;
    const kept = this.history.get(view) ?? [];
    for (let i = kept.length - 1; i >= 0; i--) if (kept[i]!.typeVersions.get(typeUrl) === version) return kept[i];
    return undefined;
  }

  watch(listener: (view: ProxyView) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get watchCount(): number {
    return this.listeners.size;
  }
}
