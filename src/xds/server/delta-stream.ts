import type { DeltaDiscoveryRequest__Output } from '../../generated/envoy/service/discovery/v3/DeltaDiscoveryRequest.js';
import { changedNames, isWholeType, wholeTypeEntries } from '../cache/snapshot.js';
import type { Resource, Snapshot } from '../cache/snapshot.js';
import { encodeDeltaDiscoveryResponse } from '../cache/wire.js';
import { TypeUrl, isFullStateType, isXdsType, shortTypeName } from '../type-urls.js';
import type { XdsTypeUrl } from '../type-urls.js';
import type { VersionsRead } from './request-names.js';
import { XdsStream, eachOnce } from './stream-base.js';
import type { AdsCall } from './stream-base.js';
import { clearIfAny, type TypeState } from './stream-state.js';

export type DeltaCall = AdsCall<DeltaDiscoveryRequest__Output>;

/** The versions a reconnecting client says it has, however the request was decoded (see request-names.ts). */
function initialVersions(request: DeltaDiscoveryRequest__Output & VersionsRead): ReadonlyMap<string, string> {
  if (request.initialVersions !== undefined) return request.initialVersions;
  const entries = Object.entries(request.initial_resource_versions ?? {});
  return entries.length === 0 ? NO_VERSIONS : new Map(entries);
}

const NO_VERSIONS: ReadonlyMap<string, string> = new Map();

/** Responses remembered per type for matching ACKs and NACKs; older ones are forgotten. */
const MAX_OUTSTANDING = 32;

/**
 * One incremental (delta) ADS stream, per Envoy's incremental xDS protocol:
 *
 * - The subscription changes by `resource_names_subscribe` / `_unsubscribe`,
 *   with `*` for wildcard; a first request naming nothing is the legacy
 *   wildcard (CDS and LDS only). Subscription changes are honoured whatever
 *   the nonce: a stale nonce only means the request is not an ACK of the latest.
 * - Each response carries only resources whose version (the snapshot's
 *   content hash) differs from what the client has, and `removed_resources`.
 * - Every name in `resource_names_subscribe` is answered, with the resource,
 *   or in `removed_resources` if it does not exist. The name stays subscribed,
 *   so it is sent when it appears: Envoy reads such a removal as "does not
 *   exist", not as the end of its interest.
 * - `initial_resource_versions` on a stream's first request says what a
 *   reconnecting client already has; those are not sent again.
 * - ACK/NACK are matched by nonce. A NACKed version is not sent again; the
 *   next version of the resource is.
 */
export class DeltaStream extends XdsStream<DeltaDiscoveryRequest__Output> {
  readonly protocol = 'delta' as const;

  protected isServedType(typeUrl: string): typeUrl is XdsTypeUrl {
    return isXdsType(typeUrl);
  }

  protected handle(type: TypeState, request: DeltaDiscoveryRequest__Output): void {
    if (request.response_nonce !== '') this.settle(type, request);

    const shared = this.sharedNames(type.typeUrl as XdsTypeUrl);
    const initial = initialVersions(request);
    const subscribe = request.resource_names_subscribe;
    const unsubscribe = request.resource_names_unsubscribe;
    if (!type.requested) {
      type.requested = true;
      type.answer = true;
      type.fullScan = true;
      for (const [name, version] of initial) type.claim(shared(name), version);
      if (subscribe.length === 0 && unsubscribe.length === 0 && isFullStateType(type.typeUrl)) type.wildcard = true;
    }
    for (const name of subscribe) {
      if (name === '*') {
        if (!type.wildcard) type.fullScan = true;
        type.wildcard = true;
        continue;
      }
      type.addName(shared(name));
      // A reconnecting client listing the version it has need not get it again; anyone else asking is answered.
      if (!initial.has(name)) type.force.add(name);
    }
    for (const name of unsubscribe) {
      if (name === '*') {
        type.wildcard = false;
        // What only the wildcard brought, the client drops itself.
        for (const sent of [...type.sentNames()]) if (!type.names.has(sent)) type.forget(sent);
        continue;
      }
      if (!type.deleteName(name)) continue; // a phantom unsubscription
      if (type.wildcard) {
        // Still wanted through the wildcard, or not: the client cannot tell, so say which.
        type.force.add(name);
      } else {
        type.force.delete(name);
        type.forget(name); // so subscribing again sends it again
      }
    }
  }

  /** Records the ACK or NACK of the response with this nonce, if it is one this stream sent. */
  private settle(type: TypeState, request: DeltaDiscoveryRequest__Output): void {
    const nonce = request.response_nonce;
    const sent = type.outstanding.get(nonce);
    if (sent === undefined) {
      this.log.debug({ type: shortTypeName(type.typeUrl), nonce }, 'unknown or stale nonce; subscription changes still apply');
      return;
    }
    // This response and every older one are settled.
    this.settleSent(type, nonce, request.error_detail == null);
    for (const key of [...type.outstanding.keys()]) {
      type.outstanding.delete(key);
      if (key === nonce) break;
    }
    if (request.error_detail != null) {
      const message = request.error_detail.message || `code ${request.error_detail.code}`;
      type.nack = { version: sent.version, message, at: new Date() };
      this.log.warn({ type: shortTypeName(type.typeUrl), version: sent.version, nonce, error: message }, 'NACK');
      this.callbacks.onNack?.(this, type.typeUrl, sent.version, message);
    } else {
      type.versionAcked = sent.version;
      type.nack = undefined;
      this.callbacks.onAck?.(this, type.typeUrl, sent.version, Date.now() - sent.sentAt);
    }
  }

  protected respond(type: TypeState, snapshot: Snapshot): void {
    const typeUrl = type.typeUrl as XdsTypeUrl;
    const { resources: available, version } = this.served(type, snapshot);
    let candidates: Iterable<string>;
    if (type.fullScan || type.syncedTo === undefined) {
      candidates = eachOnce([...(type.wildcard ? [available] : []), type.names, type.sent, type.force]);
    } else {
      const changed = changedNames(type.syncedTo, snapshot).get(typeUrl)!;
      candidates = type.force.size === 0 && type.retained.size === 0 ? changed : new Set([...changed, ...type.force, ...type.retained]);
    }

    if (type.presumedHeld.size > 0) {
      // A reconnecting client holds what it listed; those of the current version count as ACKed, so they do not hold back routes naming them.
      const held: Resource[] = [];
      for (const [name, version] of type.presumedHeld) {
        const resource = available.get(name);
        if (resource?.version === version) held.push(resource);
      }
      type.presumeAcked(held, snapshot);
      clearIfAny(type.presumedHeld);
    }
    const updated: Resource[] = [];
    const removed: string[] = [];
    const retained = new Set<string>();
    let referenced: ReadonlySet<string> | undefined;
    const mustKeep = (name: string): boolean => {
      // Make-before-break: a cluster gone from the snapshot stays while something the client may use names it, and its endpoints with it.
      if (typeUrl === TypeUrl.Cluster) return (referenced ??= this.clustersStillReferenced()).has(name);
      if (typeUrl === TypeUrl.ClusterLoadAssignment) return this.clusterHeld(name);
      return false;
    };
    for (const name of candidates) {
      const wanted = type.wildcard || type.names.has(name);
      const resource = available.get(name);
      if (resource !== undefined) {
        if (wanted && (type.force.has(name) || type.sentVersion(name) !== resource.version)) updated.push(resource);
      } else if (type.hasSent(name) && mustKeep(name)) {
        retained.add(name);
      } else if (type.hasSent(name) || (wanted && type.force.has(name))) {
        // Gone, or asked for and not there (yet): either way the client learns it does not exist.
        removed.push(name);
      }
    }
    if (this.mustWaitForClusters(type, updated, snapshot)) return;
    if (typeUrl === TypeUrl.Cluster) this.rewarmEndpoints(updated.filter((r) => type.hasSent(r.name)));
    clearIfAny(type.retained);
    for (const name of retained) type.retained.add(name);
    const answer = type.settle(snapshot);
    if (updated.length === 0 && removed.length === 0 && !answer) return;

    const nonce = this.nextNonce();
    type.versionSent = version;
    type.nonceSent = nonce;
    type.sentAt = Date.now();
    type.responses += 1;
    type.outstanding.set(nonce, { version, sentAt: type.sentAt });
    if (type.outstanding.size > MAX_OUTSTANDING) type.outstanding.delete(type.outstanding.keys().next().value!);
    // A client given every resource of the type while it held none (a connect storm) gets the snapshot's ready run of entries.
    const whole = removed.length === 0 && type.holdsNothing() && isWholeType(snapshot, typeUrl, updated);
    type.recordSent(nonce, type.sentAt, false, updated, removed, snapshot, whole);
    const entries = whole ? [wholeTypeEntries(snapshot, typeUrl, 'delta')] : updated.map((r) => r.wire.delta);
    this.write(encodeDeltaDiscoveryResponse({ systemVersion: version, typeUrl, nonce, entries, removed }));
    this.log.debug({ type: shortTypeName(typeUrl), version, nonce, resources: updated.length, removed: removed.length, retained: retained.size }, 'delta response sent');
    this.callbacks.onResponse?.(this, typeUrl, version, updated.length);
  }

  /**
   * Envoy warms a changed cluster by waiting for its endpoints, and over delta
   * it asks nothing (the names it subscribes to did not change): without an
   * answer the cluster stays warming until its initial fetch times out (15 s),
   * serving the old settings. So the endpoints of every cluster the client
   * already had and is sent again go out after it, even unchanged.
   */
  private rewarmEndpoints(changedClusters: readonly Resource[]): void {
    const eds = this.state.get(TypeUrl.ClusterLoadAssignment);
    if (eds === undefined || !eds.requested) return;
    for (const cluster of changedClusters) {
      if (eds.wildcard || eds.names.has(cluster.name)) eds.force.add(cluster.name);
    }
  }
}
