import { combineLatest, filter, scan } from 'rxjs';
import type { Observable } from 'rxjs';
import type { ServiceCatalog } from '../model/catalog.js';
import { mergeCatalog } from '../model/merge.js';
import type { RegistryState } from '../model/registry-state.js';
import type { PolicySet } from '../istio/policy-set.js';
import { buildRoutingModel } from '../model/routing/build.js';
import type { RoutingModel } from '../model/routing/types.js';
import { buildSnapshot } from '../xds/cache/snapshot.js';
import type { Packer, Snapshot } from '../xds/cache/snapshot.js';
import { translateView } from '../xds/translate/translate.js';
import type { KindTranslation, ProxyView, TranslateOptions, Translation } from '../xds/translate/translate.js';
import type { TranslationMemo } from '../xds/translate/memo.js';
import { debounceWithMaxWait } from './batching.js';

export interface Batching {
  readonly debounceMs: number;
  readonly maxDelayMs: number;
}

export interface CatalogUpdate {
  readonly states: readonly RegistryState[];
  readonly catalog: ServiceCatalog;
  readonly policySet: PolicySet;
  /** Policy resolved against the catalog and checked as a whole. */
  readonly routing: RoutingModel;
}

/**
 * Registry states and policy in, merged catalogs with their routing model out.
 * The one place churn is batched: nothing is emitted until every source has
 * reported once, then at most one update per debounce window. Each catalog
 * and routing model is built with the previous one: unchanged services and
 * ports keep their objects (what translation skips by), and a port whose new
 * rule fails validation keeps its routes in force.
 */
export function catalogUpdates(
  registries: readonly Observable<RegistryState>[],
  policies: Observable<PolicySet>,
  batching: Batching,
): Observable<CatalogUpdate> {
  return combineLatest([combineLatest(registries), policies]).pipe(
    debounceWithMaxWait(batching.debounceMs, batching.maxDelayMs),
    scan((previous: CatalogUpdate | undefined, [states, policySet]): CatalogUpdate => {
      const catalog = mergeCatalog(states, previous?.catalog);
      return { states, catalog, policySet, routing: buildRoutingModel(catalog, policySet, previous?.routing) };
    }, undefined),
    filter((update): update is CatalogUpdate => update !== undefined),
  );
}

export interface ViewBuild {
  readonly snapshot: Snapshot;
  readonly translation: Translation;
}

/** What the views of one proxy kind share in one update: clusters, listeners and routes, and the base view's snapshot. */
export interface KindBuild {
  readonly translation: KindTranslation;
  /** The snapshot of the kind's view without a locality, once built: locality views take its unchanged resources as they are. */
  donor?: Snapshot;
}

/**
 * Translates a catalog for one view, reusing the unchanged resources of its
 * previous snapshot. With `shared`, only the view's endpoints are translated:
 * clusters, listeners and routes are built once per proxy kind. With `memo`,
 * services unchanged since the last build given it are not translated again.
 */
export function buildView(
  view: ProxyView,
  catalog: ServiceCatalog,
  routing: RoutingModel,
  options: TranslateOptions,
  pack: Packer,
  previous: Snapshot | undefined,
  shared?: KindBuild,
  memo?: TranslationMemo,
): ViewBuild {
  const translation = translateView(catalog, view, options, routing, shared?.translation, memo);
  return { translation, snapshot: buildSnapshot(view, translation, pack, previous, shared?.donor) };
}
