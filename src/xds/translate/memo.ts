import type { Service } from '../../model/service.js';

interface Remembered {
  readonly inputs: readonly unknown[];
  readonly value: unknown;
}

/**
 * Per variant (what is built, for which proxy kind or client locality), per
 * service; or, for a whole that many services make together, under one
 * variant by a key of its own.
 */
type Generation = Map<string, Map<Service | string, Remembered>>;

const SHARED = 'shared';

/**
 * What translation built for each service in the last update, so that a
 * rebuild after one endpoint moved translates that service, not the thousand
 * beside it. mergeCatalog and buildRoutingModel hand back the previous objects
 * of what did not change, so a service is recognised by identity: the frozen
 * Service, and the inputs each translator reads besides it (its ports'
 * routing, the PeerAuthentications).
 *
 * Only what the last update used is kept: a variant no view asks for any more
 * (a locality whose clients left; clients choose their locality, so there is
 * no bound on how many come and go) is forgotten one update later. Built by
 * the composition root and given to every build; translation without one
 * builds everything.
 */
export class TranslationMemo {
  private kept: Generation = new Map();
  private used: Generation = new Map();

  /** Called before each update's builds: what the update before did not use is let go. */
  nextUpdate(): void {
    this.kept = this.used;
    this.used = new Map();
  }

  /**
   * What `build` made for `service` when `variant` was last asked for with the
   * very same `inputs` (compared one by one, by identity); else builds it. A
   * service that is not frozen could change under the memo, so it is always
   * built.
   */
  recall<T>(service: Service, variant: string, inputs: readonly unknown[], build: () => T): T {
    if (!Object.isFrozen(service)) return build();
    return this.remember(variant, service, inputs, build);
  }

  /**
   * What `build` made for `key` the last time it was asked for with the very
   * same `inputs`; else builds it. For resources that gather many services'
   * parts (a port's route configuration): given those parts as inputs, an
   * unchanged whole is the same object.
   */
  recallShared<T>(key: string, inputs: readonly unknown[], build: () => T): T {
    return this.remember(SHARED, key, inputs, build);
  }

  private remember<T>(variant: string, key: Service | string, inputs: readonly unknown[], build: () => T): T {
    let used = this.used.get(variant);
    let remembered = used?.get(key) ?? this.kept.get(variant)?.get(key);
    if (remembered === undefined || !sameInputs(remembered.inputs, inputs)) remembered = { inputs, value: build() };
    if (used === undefined) {
      used = new Map();
      this.used.set(variant, used);
    }
    used.set(key, remembered);
    return remembered.value as T;
  }
}

function sameInputs(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
