import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { connect, createServer } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import { CsrRejectedError, WORKLOAD_CA_DIR, WorkloadCa, rotateWorkloadRoot } from '../../src/security/workload-ca.js';
import { tempDir } from '../helpers/tmp.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const ID = 'spiffe://mesh.example/ns/shop/sa/reviews';

/** A key and CSR made by OpenSSL, as an agent would: the key stays in `dir`. */
function opensslCsr(dir: string, name: string, keyArgs: string[] = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], san = 'URI:spiffe://mesh.example/ns/kube-system/sa/admin'): { keyFile: string; csrPem: string } {
  const keyFile = join(dir, `${name}.key`);
  const csrFile = join(dir, `${name}.csr`);
  execFileSync('openssl', ['req', '-new', ...keyArgs, '-nodes', '-keyout', keyFile, '-out', csrFile, '-subj', `/CN=${name}`, '-addext', `subjectAltName=${san}`], { stdio: 'pipe' });
  return { keyFile, csrPem: readFileSync(csrFile, 'utf8') };
}

/** `openssl verify` of a chain against a bundle, at a given time, for TLS client and server use. */
function opensslVerify(dir: string, chainPem: string, bundlePem: string, at: Date, purpose: 'sslclient' | 'sslserver'): boolean {
  const [leaf, ...rest] = chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)!;
  const files = { leaf: join(dir, 'v-leaf.pem'), untrusted: join(dir, 'v-untrusted.pem'), bundle: join(dir, 'v-bundle.pem') };
  execFileSync('sh', ['-c', `cat > ${files.leaf}`], { input: `${leaf}\n` });
  execFileSync('sh', ['-c', `cat > ${files.untrusted}`], { input: `${rest.join('\n')}\n` });
  execFileSync('sh', ['-c', `cat > ${files.bundle}`], { input: bundlePem });
  const args = ['verify', '-attime', String(Math.floor(at.getTime() / 1000)), '-purpose', purpose, '-CAfile', files.bundle];
  if (rest.length > 0) args.push('-untrusted', files.untrusted);
  try {
    execFileSync('openssl', [...args, files.leaf], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

/** A real mutual-TLS handshake between two workloads; resolves with what each side saw of the other. */
async function handshake(server: { key: string; cert: string; ca: string }, client: { key: string; cert: string; ca: string }): Promise<{ serverSaw: string | undefined; clientSaw: string | undefined }> {
  const tlsServer = createServer({ ...server, requestCert: true, rejectUnauthorized: true });
  const serverSaw = new Promise<string | undefined>((resolve) =>
    tlsServer.on('secureConnection', (socket: TLSSocket) => {
      resolve(socket.getPeerCertificate().subjectaltname);
      socket.end();
    }),
  );
  await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
  const port = (tlsServer.address() as { port: number }).port;
  try {
    const clientSaw = await new Promise<string | undefined>((resolve, reject) => {
      // Workload certificates name no host: the client checks the SPIFFE ID itself (secure naming), not a DNS name.
      const socket = connect({ ...client, host: '127.0.0.1', port, checkServerIdentity: () => undefined }, () => {
        resolve(socket.getPeerCertificate().subjectaltname);
        socket.end();
      });
      socket.on('error', reject);
    });
    return { serverSaw: await serverSaw, clientSaw };
  } finally {
    tlsServer.close();
  }
}

describe('workload CA in the state directory', () => {
  const dir = tempDir();
  afterAll(() => dir.remove());

  it('creates a root on first start (key 0600, directory 0700) and reuses it afterwards', async () => {
    const state = join(dir.path, 'first');
    const ca = await WorkloadCa.open(state, 'mesh.example');
    const caDir = join(state, WORKLOAD_CA_DIR);
    expect(statSync(caDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(caDir, 'root-1.key')).mode & 0o777).toBe(0o600);
    const root = new X509Certificate(readFileSync(join(caDir, 'root-1.crt')));
    expect(root.ca).toBe(true);
    expect(root.subjectAltName).toBe('URI:spiffe://mesh.example');
    expect(ca.trustBundle()).toBe(`${root.toString().trim()}\n`);
    const again = await WorkloadCa.open(state, 'mesh.example');
    expect(again.trustBundle()).toBe(ca.trustBundle());
  });

  it('signs a CSR for the given SPIFFE ID only, 24 h, for client and server use; the CSR\'s own names are ignored', async () => {
    const ca = await WorkloadCa.open(join(dir.path, 'sign'), 'mesh.example');
    const { keyFile, csrPem } = opensslCsr(dir.path, 'reviews');
    const now = new Date();
    const issued = await ca.sign(csrPem, ID, { ttlMs: DAY, now });
    const leaf = new X509Certificate(issued.certChainPem);
    expect(leaf.subjectAltName).toBe(`URI:${ID}`);
    expect(leaf.ca).toBe(false);
    expect(leaf.subject ?? '').toBe('');
    expect(leaf.checkPrivateKey(createPrivateKey(readFileSync(keyFile)))).toBe(true);
    expect(Date.parse(leaf.validTo) - now.getTime()).toBeGreaterThan(DAY - 2_000);
    expect(Date.parse(leaf.validTo) - now.getTime()).toBeLessThanOrEqual(DAY);
    expect(issued.notAfter.getTime()).toBe(now.getTime() + DAY);
    expect(opensslVerify(dir.path, issued.certChainPem, issued.trustBundlePem, now, 'sslserver')).toBe(true);
    expect(opensslVerify(dir.path, issued.certChainPem, issued.trustBundlePem, now, 'sslclient')).toBe(true);
    expect(opensslVerify(dir.path, issued.certChainPem, issued.trustBundlePem, new Date(now.getTime() + DAY + HOUR), 'sslclient')).toBe(false);
  });

  it('two workloads it signed complete mutual TLS and each sees the other\'s SPIFFE ID', async () => {
    const ca = await WorkloadCa.open(join(dir.path, 'mtls'), 'mesh.example');
    const a = opensslCsr(dir.path, 'a');
    const b = opensslCsr(dir.path, 'b');
    const certA = await ca.sign(a.csrPem, 'spiffe://mesh.example/ns/shop/sa/a', { ttlMs: DAY });
    const certB = await ca.sign(b.csrPem, 'spiffe://mesh.example/ns/shop/sa/b', { ttlMs: DAY });
    const result = await handshake(
      { key: readFileSync(a.keyFile, 'utf8'), cert: certA.certChainPem, ca: certA.trustBundlePem },
      { key: readFileSync(b.keyFile, 'utf8'), cert: certB.certChainPem, ca: certB.trustBundlePem },
    );
    expect(result).toEqual({ serverSaw: 'URI:spiffe://mesh.example/ns/shop/sa/b', clientSaw: 'URI:spiffe://mesh.example/ns/shop/sa/a' });
  });

  it.each([
    ['empty', () => ''],
    ['not PEM', () => 'hello'],
    ['larger than 16 KiB', () => `-----BEGIN CERTIFICATE REQUEST-----\n${'A'.repeat(20_000)}\n-----END CERTIFICATE REQUEST-----\n`],
    ['signed by another key (tampered)', (csr: string) => {
      const body = csr.split('\n').filter((l) => !l.startsWith('-----')).join('');
      const der = Buffer.from(body, 'base64');
      der[der.length - 5] = der[der.length - 5]! ^ 0xff;
      return `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    }],
  ])('refuses a CSR that is %s', async (_name, make) => {
    const ca = await WorkloadCa.open(join(dir.path, 'refuse'), 'mesh.example');
    const { csrPem } = opensslCsr(dir.path, 'tamper');
    await expect(ca.sign(make(csrPem), ID, { ttlMs: DAY })).rejects.toBeInstanceOf(CsrRejectedError);
  });

  it('refuses a CSR for a weak RSA key and accepts a 2048-bit one', async () => {
    const ca = await WorkloadCa.open(join(dir.path, 'rsa'), 'mesh.example');
    const weak = opensslCsr(dir.path, 'weak', ['-newkey', 'rsa:1024']);
    await expect(ca.sign(weak.csrPem, ID, { ttlMs: DAY })).rejects.toMatchObject({ code: 'MB_CSR_REJECTED', message: expect.stringContaining('at least 2048') });
    const strong = opensslCsr(dir.path, 'strong', ['-newkey', 'rsa:2048']);
    expect(new X509Certificate((await ca.sign(strong.csrPem, ID, { ttlMs: DAY })).certChainPem).subjectAltName).toBe(`URI:${ID}`);
  });
});

describe('root rotation', () => {
  const dir = tempDir();
  afterAll(() => dir.remove());

  it('the new root is trusted at once, signs after activateAfter, and the old one stays trusted for the overlap', async () => {
    const state = join(dir.path, 'rotate');
    const t0 = new Date();
    const before = await WorkloadCa.open(state, 'mesh.example', t0);
    const oldRoot = before.signer(t0);
    const { keyFile, csrPem } = opensslCsr(dir.path, 'w');
    const oldCert = await before.sign(csrPem, ID, { ttlMs: DAY, now: t0 });

    const rotated = await rotateWorkloadRoot(state, { trustDomain: 'mesh.example', activateAfterMs: HOUR, overlapMs: 25 * HOUR, now: t0 });
    expect(rotated.id).toBe('root-2');
    await expect(rotateWorkloadRoot(state, { trustDomain: 'mesh.example', activateAfterMs: HOUR, overlapMs: 25 * HOUR, now: t0 })).rejects.toThrow(
      /root-2 is already waiting/,
    );
    const ca = await WorkloadCa.open(state, 'mesh.example');
    const roots = (at: Date) => (ca.trustBundle(at).match(/BEGIN CERTIFICATE/g) ?? []).length;

    // Before activation: the old root signs, both are in the bundle.
    const soon = new Date(t0.getTime() + HOUR / 2);
    expect(ca.signer(soon).equal(oldRoot)).toBe(true);
    expect(roots(soon)).toBe(2);

    // After activation: the new root signs; a certificate from the old root still verifies against the bundle, and so does a new one.
    const later = new Date(t0.getTime() + 2 * HOUR);
    expect(ca.signer(later).equal(oldRoot)).toBe(false);
    const newCert = await ca.sign(csrPem, ID, { ttlMs: DAY, now: later });
    expect(opensslVerify(dir.path, newCert.certChainPem, ca.trustBundle(later), later, 'sslclient')).toBe(true);
    expect(opensslVerify(dir.path, oldCert.certChainPem, ca.trustBundle(later), later, 'sslclient')).toBe(true);
    // A peer still holding only the old bundle (before it learned of the rotation) trusts... nothing new: that is why activation waits.
    expect(opensslVerify(dir.path, newCert.certChainPem, oldCert.trustBundlePem, later, 'sslclient')).toBe(false);
    // Real handshake during the overlap: old-root server, new-root client, both with the current bundle.
    const handshakeResult = await handshake(
      { key: readFileSync(keyFile, 'utf8'), cert: oldCert.certChainPem, ca: ca.trustBundle() },
      { key: readFileSync(keyFile, 'utf8'), cert: (await ca.sign(csrPem, ID, { ttlMs: DAY })).certChainPem, ca: ca.trustBundle() },
    );
    expect(handshakeResult.serverSaw).toBe(`URI:${ID}`);

    // After the overlap: only the new root remains trusted.
    const after = new Date(t0.getTime() + 26 * HOUR + 1);
    expect(roots(after)).toBe(1);
    expect(opensslVerify(dir.path, newCert.certChainPem, ca.trustBundle(after), later, 'sslclient')).toBe(true);
    expect(opensslVerify(dir.path, oldCert.certChainPem, ca.trustBundle(after), t0, 'sslclient')).toBe(false);
  });
});

describe('workload CA as an intermediate of an existing PKI', () => {
  const dir = tempDir();
  afterAll(() => dir.remove());

  function existingPki(): { rootFile: string; intermediateFile: string; intermediateKey: string } {
    const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir.path, stdio: 'pipe' });
    run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'corp-root.key', '-out', 'corp-root.crt', '-subj', '/CN=corp root', '-days', '30');
    dir.write('ext.cnf', 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n');
    run('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'mesh-int.key', '-out', 'mesh-int.csr', '-subj', '/CN=mesh intermediate');
    run('x509', '-req', '-in', 'mesh-int.csr', '-CA', 'corp-root.crt', '-CAkey', 'corp-root.key', '-CAcreateserial', '-out', 'mesh-int.crt', '-days', '10', '-extfile', 'ext.cnf');
    return { rootFile: join(dir.path, 'corp-root.crt'), intermediateFile: join(dir.path, 'mesh-int.crt'), intermediateKey: join(dir.path, 'mesh-int.key') };
  }

  it('signs with the intermediate, sends it in the chain, and trusts the PKI\'s roots', async () => {
    const pki = existingPki();
    const ca = await WorkloadCa.fromFiles({ certFile: pki.intermediateFile, keyFile: pki.intermediateKey, rootsFile: pki.rootFile });
    const { csrPem } = opensslCsr(dir.path, 'int-w');
    const issued = await ca.sign(csrPem, ID, { ttlMs: DAY });
    expect(issued.certChainPem.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    expect(issued.trustBundlePem).toBe(readFileSync(pki.rootFile, 'utf8').trim() + '\n');
    expect(opensslVerify(dir.path, issued.certChainPem, issued.trustBundlePem, new Date(), 'sslserver')).toBe(true);
    // Capped by the intermediate's own lifetime (10 days), whatever is asked.
    const long = await ca.sign(csrPem, ID, { ttlMs: 100 * DAY });
    expect(long.notAfter.getTime()).toBe(Date.parse(new X509Certificate(readFileSync(pki.intermediateFile)).validTo));
  });

  it('refuses an intermediate that does not chain to the given roots, or a key that is not its own', async () => {
    const pki = existingPki();
    const stranger = join(dir.path, 'stranger.crt');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir.path, 'stranger.key'), '-out', stranger, '-subj', '/CN=stranger', '-days', '1'], { stdio: 'pipe' });
    await expect(WorkloadCa.fromFiles({ certFile: pki.intermediateFile, keyFile: pki.intermediateKey, rootsFile: stranger })).rejects.toThrow(/does not chain/);
    await expect(WorkloadCa.fromFiles({ certFile: pki.intermediateFile, keyFile: join(dir.path, 'stranger.key'), rootsFile: pki.rootFile })).rejects.toThrow(/does not belong/);
    await expect(WorkloadCa.fromFiles({ certFile: pki.intermediateFile, keyFile: pki.intermediateKey, rootsFile: join(dir.path, 'missing.crt') })).rejects.toThrow(/cannot read .*missing\.crt/);
  });
});
