import { changedNames } from '../cache/snapshot.js';
import type { Resource, ResourceMap, Snapshot } from '../cache/snapshot.js';
import type { XdsTypeUrl } from '../type-urls.js';

const NOTHING: ResourceMap = new Map();
/** Shared by every Holding that differs from its base in nothing (most of them): an empty Map costs more than the object holding it. */
const NO_NAMES: ReadonlySet<string> = new Set();
const NO_DIFFERENCE: ReadonlyMap<string, Resource | null> = new Map();

/**
 * What a client holds of one type, or was told: an immutable map of resources
 * by name, stored as one of its view's snapshots (`base`) plus the names where
 * it differs from it (`apart`; null: not held although the base has it).
 *
 * A client in sync with its view is then one reference to the snapshot that
 * every client of the view shares: 2,000 clients of 1,000 clusters cost 2,000
 * small objects rather than 2,000 maps of 1,000 entries (per-stream maps were
 * most of the server's memory and much of its garbage collection). Being
 * immutable, the state after each unanswered response is kept without copying.
 */
export class Holding {
  private constructor(
    readonly typeUrl: XdsTypeUrl,
    /** The snapshot this differs from; undefined: from nothing. */
    readonly base: Snapshot | undefined,
    private readonly baseMap: ResourceMap,
    private readonly apart: ReadonlyMap<string, Resource | null>,
  ) {}

  static empty(typeUrl: XdsTypeUrl): Holding {
    return new Holding(typeUrl, undefined, NOTHING, NO_DIFFERENCE);
  }

  /** Exactly the snapshot's resources of the type. */
  static whole(typeUrl: XdsTypeUrl, snapshot: Snapshot): Holding {
    return new Holding(typeUrl, snapshot, snapshot.resources.get(typeUrl)!, NO_DIFFERENCE);
  }

  /**
   * What a client holds after a response with `updated` and `removed` (not
   * replacing all) computed from `snapshot`. When this was a snapshot exactly
   * and the response carried exactly what changed since (every change to a
   * client in sync), the result is that snapshot, found by looking at the
   * changes alone and allocating nothing but the result: two thousand
   * clients take each change, and whatever each allocates outlives a few
   * scavenges (it waits for the ACK) and becomes old garbage.
   */
  after(updated: readonly Resource[], removed: readonly string[], snapshot: Snapshot): Holding {
    if (this.base !== undefined && this.apart.size === 0 && this.base !== snapshot) {
      const target = snapshot.resources.get(this.typeUrl)!;
      const changed = changedNames(this.base, snapshot).get(this.typeUrl)!;
      if (updated.length + removed.length === changed.size) {
        let exact = true;
        for (const resource of updated) if (!changed.has(resource.name) || target.get(resource.name) !== resource) exact = false;
        for (const name of removed) if (!changed.has(name) || target.has(name)) exact = false;
        if (exact) return Holding.whole(this.typeUrl, snapshot);
      }
    }
    return this.with(updated, removed).rebasedOn(snapshot);
  }

  get(name: string): Resource | undefined {
    const differs = this.apart.get(name);
    if (differs !== undefined) return differs ?? undefined;
    return this.baseMap.get(name);
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  *keys(): Generator<string> {
    for (const name of this.baseMap.keys()) if (!this.apart.has(name)) yield name;
    for (const [name, resource] of this.apart) if (resource !== null) yield name;
  }

  *values(): Generator<Resource> {
    for (const [name, resource] of this.baseMap) if (!this.apart.has(name)) yield resource;
    for (const resource of this.apart.values()) if (resource !== null) yield resource;
  }

  /** This with `updated` set and `removed` dropped; `replaceAll`: `updated` is everything held. */
  with(updated: readonly Resource[], removed: Iterable<string> = [], replaceAll = false): Holding {
    if (replaceAll) return new Holding(this.typeUrl, undefined, NOTHING, new Map(updated.map((r) => [r.name, r])));
    const apart = new Map(this.apart);
    const hasBase = this.base !== undefined;
    for (const name of removed) {
      if (hasBase && this.baseMap.has(name)) apart.set(name, null);
      else apart.delete(name);
    }
    for (const resource of updated) apart.set(resource.name, resource);
    return new Holding(this.typeUrl, this.base, this.baseMap, apart);
  }

  without(name: string): Holding {
    return this.has(name) ? this.with([], [name]) : this;
  }

  /**
   * The same contents, stored as `snapshot` plus what differs from it, when
   * that is no more to keep than now. Costs what changed between the two
   * snapshots plus what already differs, not the size of the view.
   */
  rebasedOn(snapshot: Snapshot): Holding {
    const target = snapshot.resources.get(this.typeUrl)!;
    let apart = NO_DIFFERENCE as Map<string, Resource | null>;
    const compare = (name: string) => {
      const held = this.get(name);
      if (held === target.get(name)) return;
      if (apart === NO_DIFFERENCE) apart = new Map();
      apart.set(name, held ?? null);
    };
    if (this.base === undefined) {
      // From nothing, every name must be compared: only worth it for a client holding most of the view.
      if (this.apart.size * 2 < target.size) return this;
      for (const name of target.keys()) compare(name);
      for (const name of this.apart.keys()) if (!target.has(name)) compare(name);
      if (apart.size >= this.apart.size) return this;
    } else {
      const changed = this.base === snapshot ? NO_NAMES : changedNames(this.base, snapshot).get(this.typeUrl)!;
      for (const name of changed) compare(name);
      for (const name of this.apart.keys()) if (!changed.has(name)) compare(name);
      if (apart.size > this.apart.size) return this;
    }
    return new Holding(this.typeUrl, snapshot, target, apart);
  }

  /** Rebased on `other`'s snapshot, if it has one. */
  rebasedLike(other: Holding): Holding {
    return other.base === undefined ? this : this.rebasedOn(other.base);
  }

  /**
   * Names this holds that `later` does not. Only names that differ between
   * the two snapshots or from them are compared, unless either is built from nothing.
   */
  droppedIn(later: Holding): string[] {
    const dropped: string[] = [];
    const check = (name: string) => {
      if (!later.has(name) && this.has(name)) dropped.push(name);
    };
    if (this.base === undefined || later.base === undefined) {
      for (const name of this.keys()) check(name);
      return dropped;
    }
    if (this.apart.size === 0 && later.apart.size === 0) {
      if (this.base !== later.base) for (const name of changedNames(this.base, later.base).get(this.typeUrl)!) check(name);
      return dropped;
    }
    const seen = new Set<string>();
    const once = (name: string) => {
      if (seen.has(name)) return;
      seen.add(name);
      check(name);
    };
    if (this.base !== later.base) for (const name of changedNames(this.base, later.base).get(this.typeUrl)!) once(name);
    for (const name of this.apart.keys()) once(name);
    for (const name of later.apart.keys()) once(name);
    return dropped;
  }
}
