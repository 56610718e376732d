import type { ServiceCatalog } from '../model/catalog.js';
import type { RegistryError, RegistryState } from '../model/registry-state.js';
import type { RegistryKind } from '../model/registry-state.js';
import type { Snapshot } from '../xds/cache/snapshot.js';
import type { StreamInfo } from '../xds/server/stream-state.js';
import type { ProxyView } from '../xds/translate/translate.js';

/** What the daemon knows about one configured registry, beyond its latest state. */
export interface RegistryStatus {
  readonly name: string;
  readonly kind: RegistryKind;
  /** The latest state it emitted; undefined until it first reports. */
  readonly state: RegistryState | undefined;
  /** True once it has emitted a synced state, even if it is stale now. */
  readonly syncedOnce: boolean;
  readonly lastSyncAt: Date | undefined;
  readonly lastError: RegistryError | undefined;
}

export interface Readiness {
  readonly ready: boolean;
  /** Why not, for a person: "waiting for: dc1, spring", "draining". */
  readonly reason: string;
}

/**
 * The narrow view of a running daemon that the admin API, CSDS and metrics
 * read. The daemon implements it; tests can hand in anything that does.
 */
export interface AdminSource {
  readonly catalog: ServiceCatalog;
  /** Workload SPIFFE IDs are shown in it (`security.trustDomain`). */
  readonly trustDomain: string;
  registryStatus(): readonly RegistryStatus[];
  connections(): readonly StreamInfo[];
  snapshot(view: ProxyView): Snapshot | undefined;
  readiness(): Readiness;
  /** How many views (proxy kind and locality) have snapshots kept and rebuilt. */
  viewCount?(): number;
  /** Connections the xDS port lost before any stream, since start. */
  xdsConnectionErrors?(): XdsConnectionErrors;
}

export interface XdsConnectionErrors {
  /** Accepts that failed: out of file descriptors. */
  readonly failedAccepts: number;
  /** TLS handshakes that failed or presented no acceptable client certificate. */
  readonly refusedHandshakes: number;
}
