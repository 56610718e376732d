import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import { createCa, issueCertificate } from '../../src/security/ca.js';
import { bearerToken, identityFromCertificate } from '../../src/security/identity.js';
import { REVOKED_TOKENS_FILE, TOKEN_KEY_FILE, TokenAuthority, parseTtl } from '../../src/security/tokens.js';
import { tempDir } from '../helpers/tmp.js';

function peer(subjectaltname: string | undefined): PeerCertificate {
  return { subjectaltname, valid_to: 'Jan  1 00:00:00 2030 GMT' } as PeerCertificate;
}

describe('identityFromCertificate', () => {
  it.each([
    ['URI:spiffe://td/node/vm-1', { role: 'node', name: 'vm-1', principal: 'spiffe://td/node/vm-1' }],
    ['DNS:vm-1, URI:spiffe://td/operator/alice', { role: 'operator', name: 'alice' }],
  ])('%s is an identity', (san, expected) => {
    expect(identityFromCertificate(peer(san), 'td')).toMatchObject({ kind: 'certificate', ...expected });
  });

  it.each([
    [undefined, 'no SPIFFE URI SAN'],
    ['DNS:vm-1', 'no SPIFFE URI SAN'],
    ['URI:spiffe://other/node/vm-1', 'not in trust domain td'],
    ['URI:spiffe://td/ns/default/sa/web', 'is not spiffe://td/node/<id>'],
    ['URI:spiffe://td/node/vm-1, URI:spiffe://td/node/vm-2', 'exactly one is allowed'],
    ['URI:spiffe://td/node/vm 1', 'is not spiffe://td/node/<id>'],
  ])('%s is refused: %s', (san, reason) => {
    expect(identityFromCertificate(peer(san), 'td')).toEqual({ error: expect.stringContaining(reason) });
  });

  it('reads a certificate made by issueCertificate as Node presents it', async () => {
    const ca = await createCa({ trustDomain: 'td' });
    const issued = await issueCertificate({ ca, usage: 'client', commonName: 'vm-1', spiffeId: 'spiffe://td/node/vm-1' });
    const x509 = new X509Certificate(issued.certPem);
    expect(x509.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(identityFromCertificate({ subjectaltname: x509.subjectAltName, valid_to: x509.validTo } as PeerCertificate, 'td')).toMatchObject({ role: 'node', name: 'vm-1' });
  });
});

describe('bearerToken', () => {
  it.each([
    ['Bearer abc.def.ghi', 'abc.def.ghi'],
    ['bearer abc', 'abc'],
    ['Basic abc', undefined],
    ['Bearer', undefined],
    [undefined, undefined],
  ])('%s -> %s', (header, token) => expect(bearerToken(header)).toBe(token));
});

describe('TokenAuthority', () => {
  const dir = tempDir('meshbridge-tokens-');
  afterAll(() => dir.remove());

  it('keeps its key 0600 and reuses it: a token from one opening verifies in another', async () => {
    const first = await TokenAuthority.open(dir.path);
    const { token, claims } = await first.create('vm-1', 'node', 3600);
    expect(statSync(join(dir.path, TOKEN_KEY_FILE)).mode & 0o777).toBe(0o600);
    const second = await TokenAuthority.open(dir.path);
    expect(await second.verify(token)).toEqual(claims);
  });

  it('revokes by id; the revocation file is 0600, and an authority opened earlier sees it after a refresh', async () => {
    const daemonSide = await TokenAuthority.open(dir.path);
    const cliSide = await TokenAuthority.open(dir.path);
    const { token, claims } = await cliSide.create('vm-2', 'node', 3600);
    await cliSide.revoke(claims.id, claims.expiresAt);
    expect(statSync(join(dir.path, REVOKED_TOKENS_FILE)).mode & 0o777).toBe(0o600);
    expect(await daemonSide.verify(token)).toEqual(claims);
    expect(await daemonSide.refreshRevocations()).toBe(true);
    await expect(daemonSide.verify(token)).rejects.toThrow(`token ${claims.id} revoked`);
    expect((await cliSide.inspect(token)).id).toBe(claims.id);
  });

  it('drops revocations of tokens that have expired anyway when it writes', async () => {
    const authority = await TokenAuthority.open(dir.path);
    await authority.revoke('old', new Date(Date.now() - 1000));
    await authority.revoke('new', new Date(Date.now() + 3_600_000));
    const ids = (JSON.parse(readFileSync(join(dir.path, REVOKED_TOKENS_FILE), 'utf8')) as { revoked: { id: string }[] }).revoked.map((r) => r.id);
    expect(ids).toContain('new');
    expect(ids).not.toContain('old');
  });

  it('refuses subjects that are not node ids and oversized tokens', async () => {
    const authority = await TokenAuthority.open(dir.path);
    await expect(authority.create('vm 1/../x', 'node', 60)).rejects.toMatchObject({ code: 'MB_TOKEN_INVALID' });
    await expect(authority.verify('x'.repeat(5000))).rejects.toThrow('longer than');
  });

  it.each([
    ['90s', 90],
    ['30m', 1800],
    ['24h', 86_400],
    ['7d', 604_800],
    ['45', 45],
  ])('parseTtl(%s) = %d', (text, seconds) => expect(parseTtl(text)).toBe(seconds));

  it.each(['0s', '1y', '-5m', '400d', ''])('parseTtl(%s) is refused', (text) => expect(() => parseTtl(text)).toThrow('--ttl'));
});
