import type { PeerCertificate } from 'node:tls';

/**
 * Who is at the other end of an xDS stream. A node identity may claim one
 * node id; an operator may read CSDS and the admin debug pages.
 */
export interface PeerIdentity {
  readonly kind: 'certificate' | 'token' | 'anonymous';
  /** SPIFFE ID, `token:<id>`, or `anonymous`: what logs name. */
  readonly principal: string;
  readonly role: 'node' | 'operator' | 'none';
  /** The node id (role node) or operator name. */
  readonly name?: string;
  /** Past this the stream is ended (certificate notAfter or token exp). */
  readonly expiresAt?: Date;
  readonly tokenId?: string;
}

export const ANONYMOUS: PeerIdentity = { kind: 'anonymous', principal: 'anonymous', role: 'none' };

/** Every `URI:` entry of a certificate's subjectAltName. */
export function uriSans(certificate: PeerCertificate): string[] {
  const san = certificate.subjectaltname ?? '';
  return san
    .split(/,\s*/)
    .filter((entry) => entry.startsWith('URI:'))
    .map((entry) => entry.slice(4));
}

export function spiffeId(trustDomain: string, role: 'node' | 'operator', name: string): string {
  return `spiffe://${trustDomain}/${role}/${name}`;
}

/**
 * The identity a client certificate carries: exactly one SPIFFE URI SAN in
 * the trust domain, `spiffe://<td>/node/<id>` or `spiffe://<td>/operator/<name>`.
 * Anything else is refused with the reason.
 */
export function identityFromCertificate(certificate: PeerCertificate, trustDomain: string): PeerIdentity | { error: string } {
  const spiffe = uriSans(certificate).filter((uri) => uri.startsWith('spiffe://'));
  if (spiffe.length === 0) return { error: 'client certificate has no SPIFFE URI SAN' };
  if (spiffe.length > 1) return { error: `client certificate has ${spiffe.length} SPIFFE URI SANs; exactly one is allowed` };
  const id = spiffe[0]!;
  const match = /^spiffe:\/\/([^/]+)\/(node|operator)\/([\w.:@-]{1,256})$/.exec(id);
  if (match === null) return { error: `SPIFFE ID ${id} is not spiffe://${trustDomain}/node/<id> or /operator/<name>` };
  if (match[1] !== trustDomain) return { error: `SPIFFE ID ${id} is not in trust domain ${trustDomain}` };
  const expiresAt = new Date(certificate.valid_to);
  return {
    kind: 'certificate',
    principal: id,
    role: match[2] as 'node' | 'operator',
    name: match[3]!,
    ...(Number.isNaN(expiresAt.getTime()) ? {} : { expiresAt }),
  };
}

/** `Bearer <token>` (any case), or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = /^bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return match?.[1];
}
