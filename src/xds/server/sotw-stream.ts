import type { DiscoveryRequest__Output } from '../../generated/envoy/service/discovery/v3/DiscoveryRequest.js';
import { changedNames, isWholeType, wholeTypeEntries } from '../cache/snapshot.js';
import type { Resource, Snapshot } from '../cache/snapshot.js';
import { emptyAssignmentEntry, encodeDiscoveryResponse } from '../cache/wire.js';
import { TypeUrl, isFullStateType, isXdsType, shortTypeName } from '../type-urls.js';
import type { XdsTypeUrl } from '../type-urls.js';
import type { NamesDigested } from './request-names.js';
import { XdsStream, eachOnce } from './stream-base.js';
import type { AdsCall } from './stream-base.js';
import { clearIfAny, type TypeState } from './stream-state.js';

export type SotwCall = AdsCall<DiscoveryRequest__Output>;

/**
 * One state-of-the-world ADS stream. It keeps, per type, the subscription, the
 * nonce and version last sent, the version of every resource sent, and the
 * client's ACK or NACK; it answers requests and pushes snapshot changes.
 * Full-state types (CDS, LDS) always carry every subscribed resource, so
 * leaving one out removes it; EDS and RDS carry only what changed (an EDS
 * resource that is gone is sent empty to a client that does not learn it
 * from CDS). A new stream whose first request of a type carries the type's
 * current version (a client moving from another replica, or back after a
 * broken stream) is sent nothing until the type changes, as
 * go-control-plane's caches do; one carrying a recent version the cache
 * still keeps is sent only what changed since (for CDS and LDS, the whole
 * set, and only if something in it changed).
 */
export class SotwStream extends XdsStream<DiscoveryRequest__Output> {
  readonly protocol = 'sotw' as const;

  protected isServedType(typeUrl: string): typeUrl is XdsTypeUrl {
    return isXdsType(typeUrl);
  }

  protected handle(type: TypeState, request: DiscoveryRequest__Output & NamesDigested): void {
    const typeUrl = type.typeUrl;
    if (this.log.isLevelEnabled('debug')) {
      this.log.debug(
        { type: shortTypeName(typeUrl), names: request.resource_names, nonce: request.response_nonce, version: request.version_info, nack: request.error_detail != null },
        'request',
      );
    }
    // Only a request answering the latest response counts; the nonce of a new stream starts empty.
    if (request.response_nonce !== '' && type.nonceSent !== undefined && request.response_nonce !== type.nonceSent) {
      this.log.debug({ type: shortTypeName(typeUrl), nonce: request.response_nonce }, 'stale nonce ignored');
      return;
    }
    const answersLatest = request.response_nonce !== '' && request.response_nonce === type.nonceSent;
    if (answersLatest && request.error_detail != null) {
      // A NACK is the presence of error_detail: version_info then holds the last version the client accepted.
      const message = request.error_detail.message || `code ${request.error_detail.code}`;
      type.nack = { version: type.versionSent, message, at: new Date() };
      this.settleSent(type, request.response_nonce, false);
      this.log.warn({ type: shortTypeName(typeUrl), version: type.versionSent, error: message }, 'NACK');
      this.callbacks.onNack?.(this, typeUrl, type.versionSent, message);
    } else if (answersLatest) {
      this.settleSent(type, request.response_nonce, true);
      if (type.versionAcked !== type.versionSent) {
        type.versionAcked = type.versionSent;
        type.nack = undefined;
        this.callbacks.onAck?.(this, typeUrl, type.versionSent ?? '', Date.now() - type.sentAt);
      }
    }

    const firstRequest = !type.requested;
    type.requested = true;
    // The same names as last time (an ACK, nearly always) change nothing, and are then never decoded.
    const digest = request.resourceNamesDigest;
    const sameNames = !firstRequest && digest !== undefined && digest === type.namesDigest;
    type.namesDigest = digest;
    const added = sameNames ? [] : this.updateSubscription(type, request.resource_names, firstRequest);
    if (firstRequest) {
      type.answer = true;
      type.fullScan = true;
      // Replicas give the same versions for the same inputs: a client arriving from another one says what it has.
      if (request.version_info !== '' && request.response_nonce === '') type.resumedVersion = request.version_info;
    }
    if (added.includes('*')) type.fullScan = true;
    for (const name of added) type.force.add(name);
    for (const name of type.resendOnRequest) type.force.add(name);
    clearIfAny(type.resendOnRequest);
  }

  /** Applies the request's resource names; returns the names newly subscribed. */
  private updateSubscription(type: TypeState, names: readonly string[], firstRequest: boolean): string[] {
    const wasWildcard = type.wildcard;
    if (isFullStateType(type.typeUrl)) {
      // Legacy wildcard: an empty first request means "everything", and stays so while the list stays empty.
      type.wildcard = names.includes('*') || (names.length === 0 && (firstRequest || wasWildcard));
    } else {
      type.wildcard = false;
    }
    const next = new Set(names.filter((n) => n !== '*'));
    const added = [...next].filter((n) => !type.names.has(n));
    for (const name of type.names) {
      if (!next.has(name)) {
        type.deleteName(name);
        // Forgotten, so that subscribing again sends it again.
        type.forget(name);
      }
    }
    const shared = this.sharedNames(type.typeUrl as XdsTypeUrl);
    for (const name of added) type.addName(shared(name));
    if (type.wildcard && !wasWildcard) added.push('*');
    return added;
  }

  /** Sends the type's subscribed resources if any changed since last sent, or the request must be answered. */
  protected respond(type: TypeState, snapshot: Snapshot): void {
    const typeUrl = type.typeUrl as XdsTypeUrl;
    const { resources: available, version } = this.served(type, snapshot);
    const fullState = isFullStateType(typeUrl);
    const subscribed = (name: string) => type.wildcard || type.names.has(name);

    if (type.resumedVersion !== undefined) {
      const resumedVersion = type.resumedVersion;
      type.resumedVersion = undefined;
      if (resumedVersion === version) {
        // The whole type is as the client last accepted it (the version is its content hash), whatever it subscribed to: nothing to send.
        type.presumeAcked([...available.values()].filter((r) => subscribed(r.name)), snapshot);
        type.versionSent = type.versionAcked = version;
        type.settle(snapshot);
        this.log.debug({ type: shortTypeName(typeUrl), version: type.versionSent }, 'client already has this version; nothing sent');
        return;
      }
      // Versions are content hashes, equal on every replica: a recent snapshot that had this version says what the client holds.
      const resumedFrom = this.cache.withTypeVersion(this.node.view, typeUrl, resumedVersion);
      if (resumedFrom !== undefined && resumedFrom !== snapshot) {
        const held = resumedFrom.resources.get(typeUrl)!;
        type.presumeAcked([...held.values()].filter((r) => subscribed(r.name)), resumedFrom);
        type.versionSent = type.versionAcked = resumedVersion;
        // Only what changed since is compared (full-state types still send their whole set if any of it changed).
        type.syncedTo = resumedFrom;
        type.fullScan = false;
        type.force.delete('*');
        for (const name of held.keys()) type.force.delete(name);
        type.answer = false;
        this.log.debug({ type: shortTypeName(typeUrl), version: resumedVersion }, 'client resumes from a recent version; sending what changed since');
      }
    }

    // Which names could matter: all of them after a (re)subscription, else those changed since the last reconcile.
    let candidates: Iterable<string>;
    if (type.fullScan || type.syncedTo === undefined) {
      candidates = eachOnce(type.wildcard ? [available, type.names, type.sent] : [type.names, type.sent]);
    } else {
      candidates = new Set([...changedNames(type.syncedTo, snapshot).get(typeUrl)!, ...type.force, ...type.retained]);
    }
    const changed: Resource[] = [];
    let removedAny = false;
    const retained = new Set<string>();
    const emptied: string[] = [];
    let referenced: ReadonlySet<string> | undefined;
    for (const name of candidates) {
      if (!subscribed(name)) continue;
      const resource = available.get(name);
      if (resource === undefined) {
        if (!type.hasSent(name)) continue;
        // Make-before-break: a cluster stays until no listener or route the client may use names it.
        if (typeUrl === TypeUrl.Cluster && type.told.has(name) && (referenced ??= this.clustersStillReferenced()).has(name)) retained.add(name);
        else if (typeUrl === TypeUrl.ClusterLoadAssignment && !this.learnsFromClusters(name)) emptied.push(name);
        else removedAny = true;
      } else if (type.force.has(name) || type.force.has('*') || type.sentVersion(name) !== resource.version) {
        changed.push(resource);
      }
    }
    if (this.mustWaitForClusters(type, changed, snapshot)) return;
    // A client that subscribed to a name that is not there must still get an answer: for full-state types,
    // its absence from the response is how the protocol says it does not exist.
    const askedForMissing = fullState && [...type.force].some((name) => name !== '*' && subscribed(name) && !available.has(name));
    const answer = type.settle(snapshot);
    clearIfAny(type.retained);
    for (const name of retained) type.retained.add(name);
    if (!answer && changed.length === 0 && emptied.length === 0 && !(fullState && (removedAny || askedForMissing))) return;
    if (!fullState && changed.length === 0 && emptied.length === 0 && !answer) return; // nothing to say about names that do not exist yet

    let toSend: Resource[];
    if (fullState) {
      toSend = [];
      if (type.wildcard) toSend.push(...available.values());
      else for (const name of type.names) {
        const resource = available.get(name);
        if (resource !== undefined) toSend.push(resource);
      }
      for (const name of retained) toSend.push(type.told.get(name)!);
    } else {
      toSend = changed;
      // An EDS/RDS first request for names that do not exist yet gets no answer, as before: the client waits.
      if (toSend.length === 0 && emptied.length === 0) return;
    }
    if (typeUrl === TypeUrl.Cluster) this.markClusterWarming(changed);

    const nonce = this.nextNonce();
    type.versionSent = version;
    type.nonceSent = nonce;
    type.sentAt = Date.now();
    type.responses += 1;
    // Told it is empty (`emptied`), the client holds nothing of it: should the cluster come back, it is sent afresh.
    // Every resource of the type, replacing all or to a client that held none: the snapshot's ready run of entries.
    const whole = emptied.length === 0 && (fullState || type.holdsNothing()) && isWholeType(snapshot, typeUrl, toSend);
    type.recordSent(nonce, type.sentAt, fullState, toSend, emptied, snapshot, whole);
    const entries = whole ? [wholeTypeEntries(snapshot, typeUrl, 'sotw')] : [...toSend.map((r) => r.wire.sotw), ...emptied.map(emptyAssignmentEntry)];
    this.write(encodeDiscoveryResponse({ version, typeUrl, nonce, entries }));
    this.log.debug({ type: shortTypeName(typeUrl), version, nonce, resources: toSend.length, emptied: emptied.length, retained: retained.size }, 'response sent');
    this.callbacks.onResponse?.(this, typeUrl, version, toSend.length + emptied.length);
  }

  /**
   * Whether the client learns from this stream's CDS that cluster `name` is
   * gone (and drops its endpoints with it). A state-of-the-world EDS response
   * that leaves a resource out says nothing about it, so a client that does
   * not (an EDS-only subscriber) is sent the cluster's assignment with no
   * endpoints instead, as the delta protocol sends it in removed_resources:
   * otherwise it would keep using endpoints that left the registry.
   */
  private learnsFromClusters(name: string): boolean {
    const cds = this.state.get(TypeUrl.Cluster);
    return cds !== undefined && cds.requested && (cds.wildcard || cds.names.has(name));
  }

  /**
   * Envoy warms a changed cluster by asking for its endpoints again, with the
   * same names; an older Envoy without an EDS cache stays warming until it gets
   * an answer, so the next EDS request of such a cluster is answered even if unchanged.
   */
  private markClusterWarming(changedClusters: readonly Resource[]): void {
    const eds = this.state.get(TypeUrl.ClusterLoadAssignment);
    if (eds === undefined) return;
    for (const cluster of changedClusters) {
      if (eds.names.has(cluster.name)) eds.resendOnRequest.add(cluster.name);
    }
  }
}
