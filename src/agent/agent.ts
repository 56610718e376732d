import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { EnvoyApi } from '../xds/protos.js';
import { fetchTrustBundle, requestWorkloadCertificate } from './certificate-client.js';
import type { ControlPlaneCredentials, IssuedWorkloadCertificate } from './certificate-client.js';

/**
 * `meshbridge agent`: beside each sidecar, it keeps a workload certificate
 * fresh. The key is made here and never leaves the machine; the certificate,
 * key and trust bundle go to files (gRPC's file_watcher certificate provider
 * reads them) and to the local Envoy over SDS on a Unix socket. Renewal
 * happens at half the certificate's life, so a control plane outage shorter
 * than that is invisible to the workloads. Between renewals the trust bundle
 * is fetched on its own, so a new root reaches the workloads before it signs
 * however long the certificates live.
 */

/** Istio's SDS resource names, so Envoy configs written for Istio's agent work unchanged. */
export const SDS_CERTIFICATE_NAME = 'default';
export const SDS_ROOT_NAME = 'ROOTCA';
export const CERT_CHAIN_FILE = 'cert-chain.pem';
export const KEY_FILE = 'key.pem';
export const ROOT_CERT_FILE = 'root-cert.pem';
const SECRET_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';
/** Bounded per stream: a local Envoy asks for two names. */
const MAX_NAMES_PER_STREAM = 64;
/** However short the certificate, renewals do not become a loop against meshbridge. */
const MIN_RENEW_DELAY_MS = 1_000;
/** Often enough that a rotation scheduled with the default --activate-after (24 h) is never close. */
export const DEFAULT_BUNDLE_REFRESH_MS = 5 * 60_000;
/** A bundle larger than this is not a set of roots. */
const MAX_BUNDLE_BYTES = 256 * 1024;

export interface AgentOptions {
  /** meshbridge replicas, asked in turn from the last that answered: any of them signs for this node. */
  readonly xds: readonly string[];
  readonly credentials: ControlPlaneCredentials;
  /** Which identity to ask for when the node holds several. */
  readonly spiffeId?: string;
  readonly validitySeconds?: number;
  /** Where the files go. */
  readonly outDir: string;
  /** Serves SDS here when set. */
  readonly sdsSocket?: string;
  /** Share of the lifetime after which a certificate is renewed. */
  readonly renewAt?: number;
  readonly retry?: { readonly initialMs: number; readonly maxMs: number };
  /** How often the trust bundle is fetched between renewals. */
  readonly bundleRefreshMs?: number;
}

interface SdsStream {
  readonly call: grpc.ServerDuplexStream<DiscoveryRequest, unknown>;
  names: Set<string>;
  nonce: number;
}

interface DiscoveryRequest {
  readonly resource_names?: string[];
  readonly response_nonce?: string;
  readonly error_detail?: { message?: string } | null;
}

export class WorkloadAgent {
  private current: IssuedWorkloadCertificate | undefined;
  /** The roots in force: from the last certificate, or a newer bundle fetched since. */
  private trustBundle = '';
  /** Counts installs (certificate or bundle): the SDS version, and how a slow bundle fetch knows it was overtaken. */
  private version = 0;
  /** Index in options.xds of the replica that answered last. */
  private answering = 0;
  private timer: NodeJS.Timeout | undefined;
  private bundleTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private sds: grpc.Server | undefined;
  private readonly streams = new Set<SdsStream>();
  private firstIssued: Promise<void> | undefined;

  constructor(
    private readonly options: AgentOptions,
    private readonly api: EnvoyApi,
    private readonly log: Logger,
  ) {}

  get certificate(): IssuedWorkloadCertificate | undefined {
    return this.current;
  }

  /** Resolves once the first certificate is written and served; retries until then. */
  async start(): Promise<void> {
    await mkdir(this.options.outDir, { recursive: true, mode: 0o750 });
    if (this.options.sdsSocket !== undefined) await this.serveSds(this.options.sdsSocket);
    this.firstIssued = this.renew(this.options.retry?.initialMs ?? 1_000);
    await this.firstIssued;
    this.scheduleBundleRefresh();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.bundleTimer);
    for (const stream of this.streams) stream.call.end();
    this.streams.clear();
    await new Promise<void>((resolve) => (this.sds === undefined ? resolve() : this.sds.tryShutdown(() => resolve())));
  }

  /** Asks for a certificate until one comes (backing off), installs it and schedules the next renewal. */
  private async renew(delayMs: number): Promise<void> {
    const maxMs = this.options.retry?.maxMs ?? 30_000;
    for (;;) {
      if (this.stopped) return;
      try {
        const issued = await this.fromAReplica((address) =>
          requestWorkloadCertificate(address, this.options.credentials, {
            ...(this.options.spiffeId === undefined ? {} : { spiffeId: this.options.spiffeId }),
            ...(this.options.validitySeconds === undefined ? {} : { validitySeconds: this.options.validitySeconds }),
          }),
        );
        await this.install(issued);
        this.schedule(issued);
        return;
      } catch (error) {
        // The current certificate stays in use until it expires: a failed renewal is logged and retried, nothing is withdrawn.
        this.log.warn({ err: error, retryInMs: delayMs, expires: this.current?.notAfter.toISOString() }, `workload certificate not obtained: ${(error as Error).message}`);
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        delayMs = Math.min(maxMs, delayMs * 2);
      }
    }
  }

  /**
   * Asks the replica that answered last, then each other in turn: one that is
   * down or refuses costs a failed call, not a renewal. Fails with every
   * replica's reason when none answers.
   */
  private async fromAReplica<T>(ask: (address: string) => Promise<T>): Promise<T> {
    const addresses = this.options.xds;
    const reasons: string[] = [];
    for (let tried = 0; tried < addresses.length; tried++) {
      const index = (this.answering + tried) % addresses.length;
      try {
        const answer = await ask(addresses[index]!);
        if (index !== this.answering) this.log.info({ xds: addresses[index], previous: addresses[this.answering] }, 'meshbridge replica answering the agent changed');
        this.answering = index;
        return answer;
      } catch (error) {
        reasons.push(`${addresses[index]}: ${(error as Error).message}`);
      }
    }
    throw new Error(addresses.length === 1 ? reasons[0]!.slice(addresses[0]!.length + 2) : reasons.join('; '));
  }

  private schedule(issued: IssuedWorkloadCertificate): void {
    // From when it arrived, not notBefore: the CA backdates notBefore for clock skew, which would make short certificates renew at once.
    const now = Date.now();
    const at = now + (issued.notAfter.getTime() - now) * (this.options.renewAt ?? 0.5);
    const delay = Math.max(MIN_RENEW_DELAY_MS, Math.min(at - now, 2 ** 31 - 1));
    this.log.info({ spiffeId: issued.spiffeId, notAfter: issued.notAfter.toISOString(), renewInMs: delay }, 'workload certificate installed');
    this.timer = setTimeout(() => void this.renew(this.options.retry?.initialMs ?? 1_000), delay);
    this.timer.unref();
  }

  private async install(issued: IssuedWorkloadCertificate): Promise<void> {
    const dir = this.options.outDir;
    this.version += 1;
    // All written before any is renamed into place: grpc-js's file watcher does not check that the key fits the
    // chain, so the moment it could read a new key beside the old chain is two renames, not a file write.
    const staged = [
      // Bundle first: a peer's renewed certificate may already come from a new root.
      await stage(join(dir, ROOT_CERT_FILE), issued.trustBundlePem, 0o644),
      await stage(join(dir, KEY_FILE), issued.keyPem, 0o600),
      await stage(join(dir, CERT_CHAIN_FILE), issued.certChainPem, 0o644),
    ];
    for (const file of staged) await file.commit();
    this.current = issued;
    this.trustBundle = issued.trustBundlePem;
    for (const stream of this.streams) this.push(stream);
  }

  private scheduleBundleRefresh(): void {
    if (this.stopped) return;
    this.bundleTimer = setTimeout(() => void this.refreshBundle().finally(() => this.scheduleBundleRefresh()), this.options.bundleRefreshMs ?? DEFAULT_BUNDLE_REFRESH_MS);
    this.bundleTimer.unref();
  }

  /** Installs a bundle that differs from the one in force; a failure keeps the current one (the next renewal brings one too). */
  private async refreshBundle(): Promise<void> {
    const before = this.version;
    let bundle: string;
    try {
      bundle = await this.fromAReplica((address) => fetchTrustBundle(address, this.options.credentials));
    } catch (error) {
      this.log.warn({ err: error }, `trust bundle not refreshed: ${(error as Error).message}`);
      return;
    }
    // A renewal installed meanwhile carries a bundle at least as new as this one.
    if (this.stopped || this.version !== before || bundle === this.trustBundle) return;
    if (Buffer.byteLength(bundle) > MAX_BUNDLE_BYTES) {
      this.log.warn({ bytes: Buffer.byteLength(bundle) }, `trust bundle larger than ${MAX_BUNDLE_BYTES} bytes ignored`);
      return;
    }
    this.version += 1;
    await writeAtomically(join(this.options.outDir, ROOT_CERT_FILE), bundle, 0o644);
    this.trustBundle = bundle;
    this.log.info({ roots: bundle.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0 }, 'trust bundle updated');
    for (const stream of this.streams) this.push(stream);
  }

  private secret(name: string): object | undefined {
    const issued = this.current;
    if (issued === undefined) return undefined;
    if (name === SDS_CERTIFICATE_NAME) {
      return {
        name,
        tls_certificate: {
          certificate_chain: { inline_bytes: Buffer.from(issued.certChainPem) },
          private_key: { inline_bytes: Buffer.from(issued.keyPem) },
        },
      };
    }
    if (name === SDS_ROOT_NAME) return { name, validation_context: { trusted_ca: { inline_bytes: Buffer.from(this.trustBundle) } } };
    return undefined;
  }

  private push(stream: SdsStream): void {
    if (this.current === undefined) return;
    const resources = [...stream.names]
      .sort()
      .map((name) => this.secret(name))
      .filter((s): s is object => s !== undefined)
      .map((secret) => this.api.pack(SECRET_TYPE, secret));
    stream.nonce += 1;
    stream.call.write({ version_info: String(this.version), resources, type_url: SECRET_TYPE, nonce: String(stream.nonce) });
  }

  private async serveSds(socket: string): Promise<void> {
    await mkdir(dirname(socket), { recursive: true, mode: 0o750 });
    await rm(socket, { force: true });
    const server = new grpc.Server();
    server.addService(this.api.sds.envoy.service.secret.v3.SecretDiscoveryService.service, {
      StreamSecrets: (call: grpc.ServerDuplexStream<DiscoveryRequest, unknown>) => {
        const stream: SdsStream = { call, names: new Set(), nonce: 0 };
        this.streams.add(stream);
        call.on('data', (request: DiscoveryRequest) => {
          const names = new Set((request.resource_names ?? []).slice(0, MAX_NAMES_PER_STREAM));
          if (request.error_detail?.message) this.log.warn({ names: [...names] }, `Envoy rejected a secret: ${request.error_detail.message}`);
          const changed = names.size !== stream.names.size || [...names].some((n) => !stream.names.has(n));
          stream.names = names;
          // An ACK or NACK of what was sent needs no answer; a first request or new names do.
          if (changed || request.response_nonce === undefined || request.response_nonce === '') this.push(stream);
        });
        const forget = () => this.streams.delete(stream);
        call.on('end', () => {
          forget();
          call.end();
        });
        call.on('error', forget);
        call.on('cancelled', forget);
      },
      FetchSecrets: (call: grpc.ServerUnaryCall<DiscoveryRequest, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        const names = (call.request.resource_names ?? []).slice(0, MAX_NAMES_PER_STREAM);
        const resources = names.map((n) => this.secret(n)).filter((s): s is object => s !== undefined).map((s) => this.api.pack(SECRET_TYPE, s));
        callback(null, { version_info: String(this.version), resources, type_url: SECRET_TYPE });
      },
      DeltaSecrets: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
        call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'use StreamSecrets' });
      },
    });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (error) => (error ? reject(error) : resolve())),
    );
    // Only the service user (and its group, Envoy's) may ask for the key.
    await chmod(socket, 0o660);
    this.sds = server;
    this.log.info({ socket }, 'serving SDS');
  }
}

async function writeAtomically(file: string, content: string, mode: number): Promise<void> {
  await (await stage(file, content, mode)).commit();
}

/** Writes `content` beside `file`; commit() renames it into place, so a reader (gRPC's file watcher) sees the old file or the new one, never half of one. */
async function stage(file: string, content: string, mode: number): Promise<{ commit(): Promise<void> }> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, content, { mode });
  await chmod(tmp, mode);
  return { commit: () => rename(tmp, file) };
}
