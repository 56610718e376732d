import { isIP } from 'node:net';
import { TokenError } from '../errors.js';
import { bearerToken } from './identity.js';
import { isLoopbackHost } from './tls-files.js';
import type { TokenAuthority } from './tokens.js';

/** Pages anyone who reaches the admin port may read: probes and scrapers carry no credentials. */
export const OPEN_ADMIN_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/metrics']);

export interface AdminAccessOptions {
  /** Host names accepted besides loopback names and IP literals. */
  readonly allowedHosts: readonly string[];
  /** Every page but the open ones needs an operator token. */
  readonly requireToken: boolean;
  /** Verifies operator tokens; looked up per request since the daemon opens it at start. */
  readonly tokens: () => TokenAuthority | undefined;
}

export type AdminDecision = { readonly allowed: true } | { readonly allowed: false; readonly status: 400 | 401 | 403; readonly reason: string };

/** The host part of a Host header: `name`, `name:port`, `[v6]:port`. */
export function hostOfHeader(header: string): string {
  const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(header);
  if (v6 !== null) return v6[1]!.toLowerCase();
  return header.replace(/:\d+$/, '').toLowerCase();
}

/**
 * The Host header check against DNS rebinding: a page in a browser can make
 * its own DNS name resolve to 127.0.0.1, but its requests still carry that
 * name. Loopback names and IP literals cannot be rebound; other names must be
 * listed in admin.allowedHosts.
 */
export function hostAllowed(header: string | undefined, allowedHosts: readonly string[]): boolean {
  if (header === undefined || header === '') return false;
  const host = hostOfHeader(header);
  if (isLoopbackHost(host) || isIP(host) !== 0) return true;
  return allowedHosts.some((allowed) => allowed.toLowerCase() === host);
}

/** Whether one admin request may be answered: Host first, then the operator token for protected pages. */
export async function checkAdminRequest(
  options: AdminAccessOptions,
  request: { readonly path: string; readonly host: string | undefined; readonly authorization: string | undefined },
): Promise<AdminDecision> {
  if (!hostAllowed(request.host, options.allowedHosts)) {
    return {
      allowed: false,
      status: request.host ? 403 : 400,
      reason: request.host ? `Host "${request.host}" is not a loopback name, an IP address or in admin.allowedHosts` : 'no Host header',
    };
  }
  if (OPEN_ADMIN_PATHS.has(request.path) || !options.requireToken) return { allowed: true };
  const token = bearerToken(request.authorization);
  if (token === undefined) return { allowed: false, status: 401, reason: `${request.path} needs an operator token (Authorization: Bearer …; meshbridge token create --operator NAME)` };
  const tokens = options.tokens();
  if (tokens === undefined) return { allowed: false, status: 401, reason: 'tokens are not accepted: the daemon has no token key' };
  try {
    const claims = await tokens.verify(token);
    if (claims.role !== 'operator') return { allowed: false, status: 403, reason: `token ${claims.id} is a node token; ${request.path} needs an operator token` };
    return { allowed: true };
  } catch (error) {
    if (error instanceof TokenError) return { allowed: false, status: 401, reason: error.message };
    throw error;
  }
}
