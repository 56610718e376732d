import { combineLatest, map } from 'rxjs';
import type { Observable } from 'rxjs';
import type { ServiceCatalog } from '../model/catalog.js';
import { mergeCatalog } from '../model/merge.js';
import type { RegistryState } from '../model/registry-state.js';
import type { PolicySet } from '../istio/policy-set.js';
import { resolvePolicy } from '../model/routing/resolve.js';
import type { ResolvedPolicy } from '../model/routing/resolve.js';
import { buildSnapshot } from '../xds/cache/snapshot.js';
import type { Packer, Snapshot } from '../xds/cache/snapshot.js';
import { translate } from '../xds/translate/translate.js';
import type { ProxyView, TranslateOptions, Translation } from '../xds/translate/translate.js';
import { debounceWithMaxWait } from './batching.js';

export interface Batching {
  readonly debounceMs: number;
  readonly maxDelayMs: number;
}

export interface CatalogUpdate {
  readonly states: readonly RegistryState[];
  readonly catalog: ServiceCatalog;
  readonly policySet: PolicySet;
  readonly policy: ResolvedPolicy;
}

/**
 * Registry states and policy in, merged catalogs with bound policy out. The one
 * place churn is batched: nothing is emitted until every source has reported
 * once, then at most one update per debounce window.
 */
export function catalogUpdates(
  registries: readonly Observable<RegistryState>[],
  policies: Observable<PolicySet>,
  batching: Batching,
): Observable<CatalogUpdate> {
  return combineLatest([combineLatest(registries), policies]).pipe(
    debounceWithMaxWait(batching.debounceMs, batching.maxDelayMs),
    map(([states, policySet]) => {
      const catalog = mergeCatalog(states);
      return { states, catalog, policySet, policy: resolvePolicy(catalog, policySet) };
    }),
  );
}

export interface ViewBuild {
  readonly snapshot: Snapshot;
  readonly translation: Translation;
}

/** Translates a catalog for one view, reusing the unchanged resources of its previous snapshot. */
export function buildView(
  view: ProxyView,
  catalog: ServiceCatalog,
  policy: ResolvedPolicy,
  options: TranslateOptions,
  pack: Packer,
  previous: Snapshot | undefined,
): ViewBuild {
  const translation = translate(catalog, view, options, policy);
  return { translation, snapshot: buildSnapshot(view, translation, pack, previous) };
}
