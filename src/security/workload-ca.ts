// @peculiar/x509 resolves its parts through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import { X509Certificate as NodeX509, createPrivateKey, webcrypto } from 'node:crypto';
import { chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { MeshbridgeError } from '../errors.js';
import { CaError, createCa, importSigningKey, serialNumber } from './ca.js';

/**
 * The CA that signs workload certificates (X.509-SVIDs): a root meshbridge
 * creates in its state directory on first start, or an intermediate of an
 * existing PKI given as files. Roots rotate on a schedule kept beside them:
 * a new root is trusted at once but signs only from `activeFrom`, and the old
 * one stays trusted until `trustedUntil`, so every peer has both roots in its
 * bundle before it meets a certificate from the new one, and until the last
 * certificate from the old one has expired.
 */

type CryptoKey = webcrypto.CryptoKey;
const crypto = webcrypto as unknown as NonNullable<Parameters<typeof x509.X509CertificateGenerator.create>[1]>;

export const WORKLOAD_CA_DIR = 'workload-ca';
const SCHEDULE_FILE = 'roots.json';
/** A CSR is a few hundred bytes; anything near this is not one. */
export const MAX_CSR_BYTES = 16 * 1024;
const MIN_RSA_BITS = 2048;
const ROOT_DAYS = 3650;
const CLOCK_SKEW_MS = 60_000;

export class CsrRejectedError extends MeshbridgeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MB_CSR_REJECTED', message, options);
  }
}

interface ScheduledRoot {
  readonly id: string;
  /** ISO time from which this root signs (the newest active root signs). */
  readonly activeFrom: string;
  /** ISO time after which it is no longer in the trust bundle; absent while current. */
  readonly trustedUntil?: string;
}

interface Authority {
  readonly certPem: string;
  readonly cert: x509.X509Certificate;
  readonly signing: Awaited<ReturnType<typeof importSigningKey>> | undefined;
  readonly activeFrom: Date;
  readonly trustedUntil: Date | undefined;
}

export interface WorkloadCertificate {
  /** Leaf first, then any intermediates: what a workload presents. */
  readonly certChainPem: string;
  readonly notAfter: Date;
  /** Roots a peer's certificate must chain to, at signing time. */
  readonly trustBundlePem: string;
}

export interface SignOptions {
  /** Requested lifetime; capped by the signer's own notAfter. */
  readonly ttlMs: number;
  readonly now?: Date;
}

export interface IntermediateFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** The roots of the existing PKI (one or more PEM certificates): the trust bundle. */
  readonly rootsFile: string;
}

export class WorkloadCa {
  private constructor(
    /** Signing authorities: roots from the state directory, or the one intermediate. */
    private readonly authorities: readonly Authority[],
    /** Certificates sent after the leaf (the intermediate, when there is one). */
    private readonly intermediatesPem: string,
    /** Extra trusted roots (an existing PKI's), besides `authorities` when those are roots. */
    private readonly externalRootsPem: string,
  ) {}

  /**
   * The CA of `<stateDir>/workload-ca`: its roots and their schedule, a root
   * created (key 0600, directory 0700) when there is none yet.
   */
  static async open(stateDir: string, trustDomain: string, now = new Date()): Promise<WorkloadCa> {
    const dir = join(stateDir, WORKLOAD_CA_DIR);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    let schedule = await readSchedule(dir);
    if (schedule.length === 0) {
      await writeRoot(dir, 'root-1', trustDomain, now);
      // 'wx' on the schedule: two processes creating a first root at once must agree on one.
      const first: ScheduledRoot[] = [{ id: 'root-1', activeFrom: new Date(now.getTime() - CLOCK_SKEW_MS).toISOString() }];
      try {
        await writeFile(join(dir, SCHEDULE_FILE), JSON.stringify(first, null, 2), { mode: 0o600, flag: 'wx' });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw new CaError(`cannot write ${join(dir, SCHEDULE_FILE)}: ${(error as Error).message}`, { cause: error });
      }
      schedule = await readSchedule(dir);
    }
    const authorities = await Promise.all(schedule.map((root) => loadRoot(dir, root)));
    return new WorkloadCa(authorities, '', '');
  }

  /** An intermediate of an existing PKI: it signs; `rootsFile` is the trust bundle. */
  static async fromFiles(files: IntermediateFiles): Promise<WorkloadCa> {
    const [certPem, keyPem, rootsPem] = await Promise.all(
      [files.certFile, files.keyFile, files.rootsFile].map((file) =>
        readFile(file, 'utf8').catch((error: unknown) => {
          throw new CaError(`cannot read ${file}: ${(error as Error).message}`, { cause: error });
        }),
      ),
    );
    const intermediate = parseCertificate(certPem!, files.certFile);
    const roots = splitPem(rootsPem!).map((pem) => parseCertificate(pem, files.rootsFile));
    if (roots.length === 0) throw new CaError(`${files.rootsFile} holds no PEM certificate`);
    if (!new NodeX509(certPem!).ca) throw new CaError(`${files.certFile} is not a CA certificate (basicConstraints CA:FALSE)`);
    if (!new NodeX509(certPem!).checkPrivateKey(createPrivateKey(keyPem!))) throw new CaError(`${files.keyFile} does not belong to ${files.certFile}`);
    const chain = await new x509.X509ChainBuilder({ certificates: roots }).build(intermediate, crypto);
    const top = chain[chain.length - 1]!;
    if (!roots.some((root) => root.equal(top)) && !roots.some((root) => root.equal(intermediate))) {
      throw new CaError(`${files.certFile} does not chain to a certificate in ${files.rootsFile}`);
    }
    const isRoot = roots.some((root) => root.equal(intermediate));
    const authority: Authority = {
      certPem: intermediate.toString('pem'),
      cert: intermediate,
      signing: await importSigningKey(keyPem!),
      activeFrom: intermediate.notBefore,
      trustedUntil: undefined,
    };
    return new WorkloadCa(
      [authority],
      isRoot ? '' : `${authority.certPem.trim()}\n`,
      roots.map((r) => r.toString('pem').trim()).join('\n') + '\n',
    );
  }

  /** The roots a peer's certificate may chain to at `now`: during a rotation, both. */
  trustBundle(now = new Date()): string {
    if (this.externalRootsPem !== '') return this.externalRootsPem;
    return this.authorities
      .filter((a) => a.trustedUntil === undefined || a.trustedUntil > now)
      .map((a) => a.certPem.trim())
      .join('\n')
      .concat('\n');
  }

  /** The authority that signs at `now`: the newest one already active. */
  signer(now = new Date()): x509.X509Certificate {
    return this.activeAuthority(now).cert;
  }

  /**
   * Signs a CSR for exactly `spiffeId`. Whatever names the CSR asks for are
   * ignored: the caller decides the identity (the node may hold it), the CSR
   * only proves possession of the key.
   */
  async sign(csrPem: string, spiffeId: string, options: SignOptions): Promise<WorkloadCertificate> {
    const now = options.now ?? new Date();
    const csr = await parseCsr(csrPem);
    const authority = this.activeAuthority(now);
    if (authority.signing === undefined) throw new CaError('the signing root has no key');
    const notAfter = new Date(Math.min(now.getTime() + options.ttlMs, authority.cert.notAfter.getTime()));
    if (notAfter.getTime() <= now.getTime()) throw new CaError(`the signing CA expired at ${authority.cert.notAfter.toISOString()}`);
    const certificate = await x509.X509CertificateGenerator.create(
      {
        serialNumber: serialNumber(),
        // An X.509-SVID names its workload in the URI SAN alone; with an empty subject that SAN must be critical (RFC 5280 4.2.1.6).
        subject: '',
        issuer: authority.cert.subject,
        notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
        notAfter,
        signingAlgorithm: authority.signing.algorithm,
        publicKey: csr.publicKey,
        signingKey: authority.signing.key,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
          new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }], true),
          await x509.AuthorityKeyIdentifierExtension.create(authority.cert, false, crypto),
        ],
      },
      crypto,
    );
    return {
      certChainPem: `${certificate.toString('pem').trim()}\n${this.intermediatesPem}`,
      notAfter,
      trustBundlePem: this.trustBundle(now),
    };
  }

  private activeAuthority(now: Date): Authority {
    const active = this.authorities.filter((a) => a.activeFrom <= now).sort((a, b) => b.activeFrom.getTime() - a.activeFrom.getTime());
    const chosen = active[0] ?? this.authorities[0];
    if (chosen === undefined) throw new CaError('the workload CA has no root');
    return chosen;
  }
}

export interface RotateOptions {
  readonly trustDomain: string;
  /** How long before the new root signs: time for every peer to receive a bundle holding it. */
  readonly activateAfterMs: number;
  /** How long the old root stays trusted after the new one signs: at least the certificates' lifetime. */
  readonly overlapMs: number;
  readonly now?: Date;
}

/**
 * Adds a new root to the schedule of `<stateDir>/workload-ca`. The current
 * root keeps signing until the new one activates, and stays trusted for the
 * overlap after that; roots whose trust ended are dropped from the schedule.
 */
export async function rotateWorkloadRoot(stateDir: string, options: RotateOptions): Promise<{ id: string; activeFrom: Date; oldTrustedUntil: Date }> {
  const now = options.now ?? new Date();
  const dir = join(stateDir, WORKLOAD_CA_DIR);
  const schedule = await readSchedule(dir);
  if (schedule.length === 0) throw new CaError(`${dir} has no workload CA yet; meshbridge creates it on first start`);
  const pending = schedule.find((r) => Date.parse(r.activeFrom) > now.getTime());
  if (pending !== undefined) throw new CaError(`root ${pending.id} is already waiting to activate at ${pending.activeFrom}`);
  const next = Math.max(...schedule.map((r) => Number(/^root-(\d+)$/.exec(r.id)?.[1] ?? 0))) + 1;
  const id = `root-${next}`;
  const activeFrom = new Date(now.getTime() + options.activateAfterMs);
  const oldTrustedUntil = new Date(activeFrom.getTime() + options.overlapMs);
  await writeRoot(dir, id, options.trustDomain, now);
  const kept = schedule
    .filter((r) => r.trustedUntil === undefined || Date.parse(r.trustedUntil) > now.getTime())
    .map((r) => (r.trustedUntil === undefined ? { ...r, trustedUntil: oldTrustedUntil.toISOString() } : r));
  const updated: ScheduledRoot[] = [...kept, { id, activeFrom: activeFrom.toISOString() }];
  const tmp = join(dir, `${SCHEDULE_FILE}.${process.pid}.tmp`);
  await writeFile(tmp, JSON.stringify(updated, null, 2), { mode: 0o600 });
  // Renamed into place: a daemon reading the schedule never sees half of it.
  await rename(tmp, join(dir, SCHEDULE_FILE));
  return { id, activeFrom, oldTrustedUntil };
}

async function readSchedule(dir: string): Promise<ScheduledRoot[]> {
  const file = join(dir, SCHEDULE_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new CaError(`cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new CaError(`${file} is not JSON: ${(error as Error).message}`, { cause: error });
  }
  if (!Array.isArray(parsed) || parsed.length > 16) throw new CaError(`${file} must be a list of at most 16 roots`);
  return parsed.map((entry: unknown, i) => {
    const root = entry as Partial<ScheduledRoot>;
    const valid =
      typeof root.id === 'string' &&
      /^root-\d{1,6}$/.test(root.id) &&
      typeof root.activeFrom === 'string' &&
      !Number.isNaN(Date.parse(root.activeFrom)) &&
      (root.trustedUntil === undefined || (typeof root.trustedUntil === 'string' && !Number.isNaN(Date.parse(root.trustedUntil))));
    if (!valid) throw new CaError(`${file}: [${i}] must be {id: root-N, activeFrom: ISO time, trustedUntil?: ISO time}`);
    return root as ScheduledRoot;
  });
}

async function writeRoot(dir: string, id: string, trustDomain: string, now: Date): Promise<void> {
  const root = await createCa({ trustDomain, commonName: `meshbridge workload CA ${trustDomain} ${id}`, days: ROOT_DAYS, now });
  await writeFile(join(dir, `${id}.key`), root.keyPem, { mode: 0o600 });
  await writeFile(join(dir, `${id}.crt`), root.certPem, { mode: 0o644 });
}

async function loadRoot(dir: string, root: ScheduledRoot): Promise<Authority> {
  const certFile = join(dir, `${root.id}.crt`);
  const keyFile = join(dir, `${root.id}.key`);
  const [certPem, keyPem] = await Promise.all(
    [certFile, keyFile].map((file) =>
      readFile(file, 'utf8').catch((error: unknown) => {
        throw new CaError(`cannot read ${file}: ${(error as Error).message}`, { cause: error });
      }),
    ),
  );
  // A key someone widened by hand is narrowed again: it signs every workload's identity.
  if (((await stat(keyFile)).mode & 0o077) !== 0) await chmod(keyFile, 0o600);
  return {
    certPem: certPem!,
    cert: parseCertificate(certPem!, certFile),
    signing: await importSigningKey(keyPem!),
    activeFrom: new Date(root.activeFrom),
    trustedUntil: root.trustedUntil === undefined ? undefined : new Date(root.trustedUntil),
  };
}

function parseCertificate(pem: string, file: string): x509.X509Certificate {
  try {
    return new x509.X509Certificate(pem);
  } catch (error) {
    throw new CaError(`${file} is not a PEM certificate: ${(error as Error).message}`, { cause: error });
  }
}

function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
}

/** A CSR whose signature holds and whose key is strong enough; its requested names are not read. */
async function parseCsr(pem: string): Promise<x509.Pkcs10CertificateRequest> {
  if (typeof pem !== 'string' || pem.length === 0) throw new CsrRejectedError('the CSR is empty');
  if (Buffer.byteLength(pem) > MAX_CSR_BYTES) throw new CsrRejectedError(`the CSR is larger than ${MAX_CSR_BYTES} bytes`);
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch (error) {
    throw new CsrRejectedError(`the CSR is not a PEM PKCS#10 request: ${(error as Error).message}`, { cause: error });
  }
  const algorithm = csr.publicKey.algorithm as { name?: string; namedCurve?: string; modulusLength?: number };
  const ec = algorithm.name === 'ECDSA' && (algorithm.namedCurve === 'P-256' || algorithm.namedCurve === 'P-384');
  const rsa = algorithm.name === 'RSASSA-PKCS1-v1_5' && (algorithm.modulusLength ?? 0) >= MIN_RSA_BITS;
  if (!ec && !rsa) throw new CsrRejectedError(`the CSR's key must be ECDSA P-256/P-384 or RSA of at least ${MIN_RSA_BITS} bits`);
  let valid: boolean;
  try {
    valid = await csr.verify(crypto);
  } catch (error) {
    throw new CsrRejectedError(`the CSR's signature cannot be checked: ${(error as Error).message}`, { cause: error });
  }
  if (!valid) throw new CsrRejectedError("the CSR's signature does not match its key");
  return csr;
}
