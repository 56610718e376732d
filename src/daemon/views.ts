import type { Logger } from 'pino';
import { formatDiagnostic } from '../errors.js';
import { EMPTY_CATALOG } from '../model/catalog.js';
import type { ServiceCatalog } from '../model/catalog.js';
import type { ClusterLoadAssignment } from '../generated/envoy/config/endpoint/v3/ClusterLoadAssignment.js';
import type { RoutingModel } from '../model/routing/types.js';
import { scopeCatalog, scopeFilters, scopedHostnames, splitInboundScope } from '../model/routing/scope.js';
import { DEFAULT_TRUST_DOMAIN } from '../model/service.js';
import type { Config } from '../config/config.js';
import type { PolicySet } from '../istio/policy-set.js';
import { serviceFilterOf } from '../security/access.js';
import { ReferenceReader, buildSnapshot, checkConsistent } from '../xds/cache/snapshot.js';
import type { Packer, Snapshot } from '../xds/cache/snapshot.js';
import type { SnapshotCache } from '../xds/cache/snapshot-cache.js';
import { buildInbound, placementsByNode, withInbound } from '../xds/translate/inbound.js';
import type { Placements } from '../xds/translate/inbound.js';
import { BASE_VIEWS, parseView, translateEndpoints, translateKind, viewKey } from '../xds/translate/translate.js';
import type { ProxyView, TranslateOptions } from '../xds/translate/translate.js';
import { TranslationMemo } from '../xds/translate/memo.js';
import { buildView } from './pipeline.js';
import type { KindBuild, ViewBuild } from './pipeline.js';
import type { FindingsLog } from './findings-log.js';
import { retainVanished } from './vanished-services.js';
import { SlicedQueue } from './sliced-queue.js';
import type { SeenServices } from './vanished-services.js';

/** How long one event-loop turn may spend building views clients asked for; the rest are built in the turns after. */
const WANTED_VIEWS_BUDGET_MS = 10;

/** What the views of one kind and scope share: the catalog they are translated from (the kind's, narrowed to the scope's services when scoped) besides the kind's translation. */
interface ScopeBuild extends KindBuild {
  readonly catalog: ServiceCatalog;
  /**
   * Per locality, the endpoints every node view of the scope shares (each node
   * in front of workloads is a view of its own), and the first snapshot holding
   * them: translated and encoded once, not once per node.
   */
  readonly endpoints: Map<ProxyView, { readonly assignments: ClusterLoadAssignment[]; donor?: Snapshot }>;
}

export interface ViewsOptions {
  /** The translation settings in force; read on every build, so a reload applies to the next one. */
  readonly translate: () => TranslateOptions;
  /** How long proxyless clients keep a service that has vanished from every registry. */
  readonly proxylessRetentionMs: () => number;
  /** The views connected clients use now; the others, base views aside, are forgotten. */
  readonly connectedViews: () => readonly ProxyView[];
  /** The daemon is draining: a late build for a new view is not started. */
  readonly draining: () => boolean;
  /** security.access in force: a scoped view is narrowed to what its rule lets it read. */
  readonly access: () => Config['security']['access'];
}

/**
 * The views the daemon serves, and their snapshots: on every catalog update
 * the base views are translated eagerly (so readiness means "translated and
 * being served") and the views clients use are rebuilt; a view a client asks
 * for first is built outside its stream's push. The cache only stores what is
 * built here; fetching from it never translates.
 */
export class Views {
  private latest:
    | {
        catalog: ServiceCatalog;
        routing: RoutingModel;
        proxylessCatalog: ServiceCatalog;
        policySet: PolicySet;
        /** Per proxy kind and scope (`kind~scope`), what its views share in this update; filled as views are built. */
        kinds: Map<string, ScopeBuild>;
        /** Where the catalog places each node's workloads; worked out when the first node view is built. */
        placements?: Placements;
      }
    | undefined;
  private seenServices: SeenServices = new Map();
  private readonly firstSnapshot: Promise<void>;
  private resolveFirstSnapshot!: () => void;
  private firstSnapshotServedValue = false;
  /** What listener and route bodies name, read once per body for the consistency check of every view built from them. */
  private readonly references = new ReferenceReader();
  /** What each unchanged service translated to last time, for every view's rebuild. */
  private readonly memo = new TranslationMemo();

  constructor(
    private readonly cache: SnapshotCache,
    private readonly pack: Packer,
    private readonly log: Logger,
    private readonly findings: FindingsLog,
    private readonly options: ViewsOptions,
  ) {
    this.firstSnapshot = new Promise((resolve) => (this.resolveFirstSnapshot = resolve));
  }

  get catalog(): ServiceCatalog {
    return this.latest?.catalog ?? EMPTY_CATALOG;
  }

  /** The Istio documents of the latest update (the Sidecars a node's scope is chosen from). */
  get policySet(): PolicySet | undefined {
    return this.latest?.policySet;
  }

  /** True once every base view has a snapshot being served. */
  get firstSnapshotServed(): boolean {
    return this.firstSnapshotServedValue;
  }

  /** Resolves once every base view has a snapshot being served. */
  served(): Promise<void> {
    return this.firstSnapshot;
  }

  /** From now on, builds a view a client asks for that has no snapshot yet. */
  start(): void {
    this.cache.onWanted((view) => this.wanted.add(view));
  }

  /**
   * A view's current snapshot; for a view no client uses, what it would be,
   * translated for the asker and not kept.
   */
  snapshot(view: ProxyView): Snapshot | undefined {
    return this.cache.peek(view) ?? this.build(view)?.snapshot;
  }

  /** Translates a new catalog and routing model for the base views and every view in use. */
  update(catalog: ServiceCatalog, routing: RoutingModel, policySet: PolicySet): void {
    const retained = retainVanished(catalog, this.seenServices, Date.now(), this.options.proxylessRetentionMs());
    this.seenServices = retained.seen;
    this.latest = { catalog, routing, proxylessCatalog: retained.catalog, policySet, kinds: new Map() };
    this.memo.nextUpdate();
    // The base views always, so /readyz means translated and being served; other views while a connected
    // client uses them: a locality whose clients all left (each VM may report its own subzone) is forgotten,
    // not rebuilt forever.
    const dropped = this.cache.retain(new Set([...BASE_VIEWS, ...this.options.connectedViews()]));
    if (dropped.length > 0) this.log.debug({ views: dropped.length }, 'views without clients forgotten');
    const views = [...new Set([...BASE_VIEWS, ...this.cache.views()])];
    const builds: ViewBuild[] = [];
    for (const view of views) {
      const build = this.build(view);
      if (build !== undefined) builds.push(build);
    }
    this.findings.report('translation', [...new Set(builds.flatMap((b) => b.translation.diagnostics.map(formatDiagnostic)))]);
    for (const { snapshot } of builds) {
      if (this.cache.set(snapshot)) {
        this.log.info({ view: snapshot.view, version: snapshot.version, services: catalog.services.length }, 'snapshot updated');
      }
    }
    if (!this.firstSnapshotServedValue && BASE_VIEWS.every((view) => this.cache.peek(view) !== undefined)) {
      this.firstSnapshotServedValue = true;
      this.resolveFirstSnapshot();
    }
  }

  /**
   * Builds a view a client asked for that has no snapshot yet (a node from a
   * new locality), outside the stream's push and a few milliseconds' worth
   * per turn; the stream is woken when the snapshot is stored. Before the
   * first catalog there is nothing to build: the first update builds every
   * wanted view.
   */
  private readonly wanted = new SlicedQueue<ProxyView>((view) => {
    if (this.options.draining() || this.cache.peek(view) !== undefined) return;
    const build = this.build(view);
    if (build !== undefined) this.cache.set(build.snapshot);
  }, WANTED_VIEWS_BUDGET_MS);

  /**
   * Translates the latest catalog for one view. A failure keeps the view's
   * previous snapshot in force: it is logged, never half-served.
   */
  private build(view: ProxyView): ViewBuild | undefined {
    if (this.latest === undefined) return undefined;
    const { routing, kinds, policySet } = this.latest;
    const { kind, locality, scope: fullScope } = parseView(view);
    // Nodes in front of workloads add their inbound side to what their Sidecar and access rule share.
    const { shared: scope, inboundNode } = splitInboundScope(fullScope);
    const options = this.options.translate();
    const sharedKey = `${kind}~${scope ?? ''}`;
    let build: ViewBuild;
    try {
      let shared = kinds.get(sharedKey);
      if (shared === undefined) {
        let catalog = kind === 'proxyless' ? this.latest.proxylessCatalog : this.latest.catalog;
        if (scope !== undefined) {
          const access = this.options.access();
          const { declared, allowed } = scopeFilters(scope, policySet.sidecars, (rule) => (access[rule] === undefined ? undefined : serviceFilterOf(access[rule])));
          catalog = scopeCatalog(catalog, scopedHostnames(catalog, routing, declared, allowed));
        }
        shared = { catalog, translation: translateKind(catalog, kind, options, routing, this.memo), endpoints: new Map() };
        kinds.set(sharedKey, shared);
      }
      const { catalog } = shared;
      if (inboundNode === undefined) {
        build = buildView(view, catalog, routing, options, this.pack, this.cache.peek(view), shared, this.memo);
        if (locality === undefined) shared.donor = build.snapshot;
      } else {
        // The inbound side reads the whole catalog: a Sidecar narrows what a node calls, not what it serves.
        this.latest.placements ??= placementsByNode(this.latest.catalog);
        const inbound = buildInbound(this.latest.catalog, routing, inboundNode, options.trustDomain ?? DEFAULT_TRUST_DOMAIN, this.latest.placements);
        const merged = withInbound(shared.translation, inbound, inboundNode);
        const translation = { ...shared.translation, ...merged, diagnostics: [...shared.translation.diagnostics, ...merged.diagnostics] };
        const localityKey = viewKey(kind, locality);
        let endpoints = shared.endpoints.get(localityKey);
        if (endpoints === undefined) {
          endpoints = { assignments: translateEndpoints(catalog, routing, locality, this.memo) };
          shared.endpoints.set(localityKey, endpoints);
        }
        const full = { ...translation, endpoints: endpoints.assignments };
        const donors = [shared.donor, endpoints.donor].filter((d): d is Snapshot => d !== undefined);
        build = { translation: full, snapshot: buildSnapshot(view, full, this.pack, this.cache.peek(view), donors) };
        endpoints.donor ??= build.snapshot;
      }
    } catch (error) {
      this.log.error({ err: error, view }, 'cannot build xDS resources; the previous ones stay in force');
      return undefined;
    }
    const problems = checkConsistent(build.snapshot, this.references);
    if (problems.length > 0) {
      this.log.error({ view, problems }, 'inconsistent snapshot not served; this is a meshbridge bug');
      return undefined;
    }
    return build;
  }
}
