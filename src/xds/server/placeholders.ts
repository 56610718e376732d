import { createHash } from 'node:crypto';
import type { Resource, ResourceMap } from '../cache/snapshot.js';
import { makeResource } from '../cache/snapshot.js';
import type { Packer } from '../cache/snapshot.js';
import { typed } from '../translate/typed.js';
import { TypeUrl } from '../type-urls.js';

/**
 * Placeholders: what a proxyless stream is sent for a Listener name it
 * subscribes to and meshbridge does not serve (issue 11, defect 6).
 *
 * gRPC clients do not take a state-of-the-world response that leaves out a
 * name they never received as proof that it does not exist (gRFC A27): they
 * wait for their own 15 s timer (grpc-go) or until the call's deadline
 * (grpc-js-xds 1.14). A Listener of that name, with an inline route
 * configuration that routes nothing, makes them fail every call at once with
 * UNAVAILABLE. It names no cluster (a cluster that does not exist would bring
 * back the 15 s wait), so make-before-break has nothing to order, and its
 * route configuration's name says why, for anyone reading the client's CSDS
 * dump. When the name appears, the real Listener (another version) replaces
 * it; when it goes, the placeholder comes back.
 *
 * No one form is taken by every client, so the form follows the client:
 * - `no-route`: one virtual host for every authority, without routes. grpc-go
 *   fails calls with `no matched route was found`, grpc-js-xds with `Failed to
 *   route call to method <method>`. gRPC C-core 1.51 NACKs it (`No route
 *   found in the virtual host.`).
 * - `no-virtual-host`: no virtual host at all. C-core fails calls with
 *   `could not find VirtualHost for <name>`; grpc-go too, but grpc-js-xds 1.14
 *   reports it as a resolution note, not an error, and keeps calls waiting.
 * Other constructs were read in the clients' code and left: a route whose
 * cluster_header gRPC ignores (gRFC A28) leaves C-core as routeless as none,
 * and grpc-js-xds 1.14 cannot read a route without a route action
 * (non_forwarding_action).
 */
export type PlaceholderForm = 'no-route' | 'no-virtual-host';

/** The form a client takes, from its node's user agent ("gRPC C-core linux Python", "gRPC Go", "gRPC Node"...). */
export function placeholderFormFor(userAgent: string): PlaceholderForm {
  return /c-core/i.test(userAgent) ? 'no-virtual-host' : 'no-route';
}

/**
 * A Listener name a placeholder may carry: what gRPC's resolver sends for
 * `xds:///host[:port]`, a DNS name and an optional port. Anything else (a
 * client's hostile megabyte of bytes, xdstp:// names, wildcards) is left out
 * of the response, as before placeholders.
 */
const PLACEHOLDER_NAME = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?(?::[0-9]{1,5})?$/;
const MAX_NAME_CHARS = 253 + 6;

export function mayHavePlaceholder(name: string): boolean {
  if (name.length > MAX_NAME_CHARS || !PLACEHOLDER_NAME.test(name)) return false;
  const colon = name.lastIndexOf(':');
  return colon === -1 || Number(name.slice(colon + 1)) <= 65_535;
}

/** The Listener that fails a gRPC client's calls to `name` at once; a pure function of its arguments. */
export function placeholderListener(name: string, form: PlaceholderForm): object {
  const virtualHosts = form === 'no-route' ? [{ name: 'does-not-exist', domains: ['*'], routes: [] }] : [];
  return {
    name,
    api_listener: {
      api_listener: typed(TypeUrl.HttpConnectionManager, {
        stat_prefix: 'meshbridge_does_not_exist',
        route_config: { name: `${name} does not exist in meshbridge`, virtual_hosts: virtualHosts },
        http_filters: [{ name: 'envoy.filters.http.router', typed_config: typed(TypeUrl.Router, {}) }],
      }),
    },
  };
}

export function buildPlaceholder(name: string, form: PlaceholderForm, pack: Packer): Resource {
  const body = placeholderListener(name, form);
  return makeResource(TypeUrl.Listener, name, JSON.stringify(body), body, pack);
}

/**
 * The version_info of a response that carries placeholders: the snapshot's
 * version of the type and each placeholder's name and version, so replicas
 * agree on it and a client resuming with it on another replica is answered as
 * one that holds exactly that.
 */
export function versionWithPlaceholders(typeVersion: string, placeholders: Iterable<Resource>): string {
  const hash = createHash('sha256').update(typeVersion);
  for (const entry of [...placeholders].map((p) => `\0${p.name}\0${p.version}`).sort()) hash.update(entry);
  return hash.digest('base64url').slice(0, 16);
}

/** What a stream reads of one type's resources: a snapshot's map, or one with the stream's placeholders beside it. */
export interface ServedResources {
  get(name: string): Resource | undefined;
  has(name: string): boolean;
  keys(): Iterable<string>;
  values(): Iterable<Resource>;
}

/** A type's resources in a snapshot, with a stream's placeholders beside them (their names are not in the snapshot). */
export class WithPlaceholders implements ServedResources {
  constructor(
    private readonly served: ResourceMap,
    private readonly placeholders: ReadonlyMap<string, Resource>,
  ) {}

  get(name: string): Resource | undefined {
    return this.served.get(name) ?? this.placeholders.get(name);
  }

  has(name: string): boolean {
    return this.served.has(name) || this.placeholders.has(name);
  }

  *keys(): Iterable<string> {
    yield* this.served.keys();
    yield* this.placeholders.keys();
  }

  *values(): Iterable<Resource> {
    yield* this.served.values();
    yield* this.placeholders.values();
  }
}
