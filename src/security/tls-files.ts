import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { TlsFilesError } from '../errors.js';

/** A PEM certificate chain, key or CA bundle larger than this is not one. */
const MAX_PEM_BYTES = 1024 * 1024;

export interface TlsFileSet {
  readonly certFile: string;
  readonly keyFile: string;
  /** Clients must present a certificate this bundle signed. */
  readonly caFile?: string;
}

export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca?: Buffer;
}

async function readBounded(file: string, what: string): Promise<Buffer> {
  let handle;
  try {
    handle = await open(file, 'r');
    const buffer = Buffer.alloc(MAX_PEM_BYTES + 1);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    if (bytesRead > MAX_PEM_BYTES) throw new TlsFilesError(`${what} ${file} is larger than ${MAX_PEM_BYTES} bytes; not a PEM file`);
    if (bytesRead === 0) throw new TlsFilesError(`${what} ${file} is empty`);
    return buffer.subarray(0, bytesRead);
  } catch (error) {
    if (error instanceof TlsFilesError) throw error;
    throw new TlsFilesError(`cannot read ${what} ${file}: ${(error as Error).message}`, { cause: error });
  } finally {
    await handle?.close();
  }
}

/**
 * Reads a certificate, its key and an optional CA bundle, and checks that
 * OpenSSL accepts them together (a key that does not match its certificate
 * fails here, not in the middle of a handshake).
 */
export async function readTlsMaterial(files: TlsFileSet): Promise<TlsMaterial> {
  // One after the other, so the error names the first bad file in the order the config lists them.
  const cert = await readBounded(files.certFile, 'certificate');
  const key = await readBounded(files.keyFile, 'private key');
  const ca = files.caFile === undefined ? undefined : await readBounded(files.caFile, 'client CA bundle');
  try {
    createSecureContext({ cert, key, ca });
  } catch (error) {
    const names = [files.certFile, files.keyFile, files.caFile].filter((f) => f !== undefined).join(', ');
    throw new TlsFilesError(`TLS files ${names} are not usable together: ${(error as Error).message}`, { cause: error });
  }
  return { cert, key, ...(ca === undefined ? {} : { ca }) };
}

function fingerprint(material: TlsMaterial): string {
  return createHash('sha256').update(material.cert).update(material.key).update(material.ca ?? '').digest('hex');
}

/**
 * Server certificate, key and client CA read from files and re-read every
 * `intervalMs`. A new set is handed on only once it loads as a whole, so a
 * rotation caught half-written keeps the previous set in force; connections
 * already open keep the context they were accepted with.
 */
export class ReloadingTlsFiles implements grpc.experimental.CertificateProvider {
  private material: TlsMaterial | undefined;
  private hash = '';
  private timer: NodeJS.Timeout | undefined;
  private failing = false;
  private readonly caListeners = new Set<grpc.experimental.CaCertificateUpdateListener>();
  private readonly identityListeners = new Set<grpc.experimental.IdentityCertificateUpdateListener>();
  private readonly changeListeners = new Set<(material: TlsMaterial) => void>();

  constructor(
    readonly files: TlsFileSet,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  /** Loads the files once (a failure here stops the daemon from starting), then watches them. */
  async start(): Promise<TlsMaterial> {
    const material = await readTlsMaterial(this.files);
    this.apply(material);
    this.timer = setInterval(() => void this.check(), this.intervalMs);
    this.timer.unref();
    return material;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  current(): TlsMaterial {
    if (this.material === undefined) throw new TlsFilesError('TLS files read before start()');
    return this.material;
  }

  /** Called with each new set after it has loaded (the admin server's own TLS context uses it). */
  onChange(listener: (material: TlsMaterial) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** Reads the files now; true when a new set took effect. The timer calls it; so may a caller that knows the files changed. */
  async check(): Promise<boolean> {
    let material: TlsMaterial;
    try {
      material = await readTlsMaterial(this.files);
    } catch (error) {
      if (!this.failing) this.log.error({ err: error }, `TLS files cannot be reloaded; the loaded ones stay in force: ${(error as Error).message}`);
      this.failing = true;
      return false;
    }
    this.failing = false;
    if (fingerprint(material) === this.hash) return false;
    this.apply(material);
    this.log.info({ certFile: this.files.certFile }, 'TLS files changed on disk: new connections use them, open streams stay up');
    return true;
  }

  private apply(material: TlsMaterial): void {
    this.material = material;
    this.hash = fingerprint(material);
    for (const listener of this.identityListeners) listener({ certificate: material.cert, privateKey: material.key });
    if (material.ca !== undefined) for (const listener of this.caListeners) listener({ caCertificate: material.ca });
    for (const listener of this.changeListeners) listener(material);
  }

  addCaCertificateListener(listener: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.add(listener);
    // Later, not now: grpc-js subscribes before it registers the watcher that applies the update.
    queueMicrotask(() => {
      if (this.material?.ca !== undefined && this.caListeners.has(listener)) listener({ caCertificate: this.material.ca });
    });
  }

  removeCaCertificateListener(listener: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.add(listener);
    queueMicrotask(() => {
      if (this.material !== undefined && this.identityListeners.has(listener)) listener({ certificate: this.material.cert, privateKey: this.material.key });
    });
  }

  removeIdentityCertificateListener(listener: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.delete(listener);
  }
}

/**
 * gRPC server credentials over reloading files. With a CA, clients are asked
 * for a certificate but the TLS layer does not reject a bad one: XdsServer
 * closes those connections itself (`requireVerifiedClientCertificate`), so it
 * can log why (expired, another CA, none sent) where the handshake alone
 * would only show a reset.
 */
export function reloadingServerCredentials(files: ReloadingTlsFiles): grpc.ServerCredentials {
  const withClientCa = files.files.caFile !== undefined;
  // grpc-js 1.14 hands its first argument to the identity slot and its second
  // to the CA slot, whatever the declared names say; one provider serves both.
  return grpc.experimental.createCertificateProviderServerCredentials(files, withClientCa ? files : null, false);
}

/** Loopback addresses and names: plaintext there reaches only this machine. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  return bare === 'localhost' || bare === '::1' || /^127\.\d+\.\d+\.\d+$/.test(bare) || bare.endsWith('.localhost');
}
