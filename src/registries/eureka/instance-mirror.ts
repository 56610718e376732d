import { EUREKA_STATUSES } from './eureka-json.js';
import type { EurekaInstance, EurekaStatus } from './eureka-json.js';

/**
 * The local copy of a Eureka server's registry, kept the way Netflix's
 * DiscoveryClient keeps it: replaced whole by a full fetch, patched by deltas
 * applied by application and instance id, and checked against the server's
 * reconcile hash after every delta.
 */
export class InstanceMirror {
  /** app -> instance id -> instance. An app with no instances is not kept. */
  private readonly apps = new Map<string, Map<string, EurekaInstance>>();
  private count = 0;
  /** Counts up on every change, so callers can tell whether anything moved. */
  private revision = 0;

  get size(): number {
    return this.count;
  }

  get version(): number {
    return this.revision;
  }

  get isEmpty(): boolean {
    return this.count === 0;
  }

  instances(): EurekaInstance[] {
    return [...this.apps.values()].flatMap((byId) => [...byId.values()]);
  }

  /** Replaces everything with a full fetch. Returns true if the content changed. */
  replaceAll(instances: readonly EurekaInstance[]): boolean {
    const before = this.fingerprint();
    this.apps.clear();
    this.count = 0;
    for (const instance of instances) this.put(instance);
    const changed = this.fingerprint() !== before;
    if (changed) this.revision++;
    return changed;
  }

  /**
   * Applies a delta as DiscoveryClient.updateDelta does: ADDED and MODIFIED
   * replace the instance with the same id (adding its app if needed), DELETED
   * removes it, and an app left without instances disappears. An instance
   * with no action type is ignored (the hash check then catches any drift).
   * Returns true if anything changed.
   */
  applyDelta(instances: readonly EurekaInstance[]): boolean {
    let changed = false;
    for (const instance of instances) {
      switch (instance.actionType) {
        case 'ADDED':
        case 'MODIFIED':
          this.put(instance);
          changed = true;
          break;
        case 'DELETED':
          changed = this.remove(instance) || changed;
          break;
        case undefined:
          break;
      }
    }
    if (changed) this.revision++;
    return changed;
  }

  /** Eureka's reconcile hash of this copy, to compare with the server's `apps__hashcode`. */
  reconcileHashCode(): string {
    return reconcileHashCode(this.instances());
  }

  private put(instance: EurekaInstance): void {
    let byId = this.apps.get(instance.app);
    if (byId === undefined) {
      byId = new Map();
      this.apps.set(instance.app, byId);
    }
    if (!byId.has(instance.id)) this.count++;
    byId.set(instance.id, instance);
  }

  private remove(instance: EurekaInstance): boolean {
    const byId = this.apps.get(instance.app);
    if (byId === undefined || !byId.delete(instance.id)) return false;
    this.count--;
    if (byId.size === 0) this.apps.delete(instance.app);
    return true;
  }

  private fingerprint(): string {
    return JSON.stringify(
      [...this.apps.entries()]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([app, byId]) => [app, [...byId.values()].map(withoutAction).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))]),
    );
  }
}

/** Full fetches mark every instance ADDED; that says nothing about the instance itself. */
function withoutAction(instance: EurekaInstance): Omit<EurekaInstance, 'actionType'> {
  const { actionType: _ignored, ...rest } = instance;
  return rest;
}

/**
 * `Applications.getReconcileHashCode()`: the number of instances in each
 * status, statuses in name order, as `STATUS_count_` pairs, e.g.
 * `OUT_OF_SERVICE_1_UP_3_`; empty for an empty registry.
 */
export function reconcileHashCode(instances: Iterable<{ readonly status: EurekaStatus }>): string {
  const counts = new Map<EurekaStatus, number>();
  for (const { status } of instances) counts.set(status, (counts.get(status) ?? 0) + 1);
  return [...EUREKA_STATUSES]
    .sort()
    .filter((s) => counts.has(s))
    .map((s) => `${s}_${counts.get(s)}_`)
    .join('');
}
