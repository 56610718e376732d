// @peculiar/x509 resolves its parts through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import { createPrivateKey, webcrypto } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import * as x509 from '@peculiar/x509';
import { MeshbridgeError } from '../errors.js';
import { certificateServiceDefinition } from '../security/certificate-service.js';
import type { SignRequest, SignResponse, TrustBundleRequest, TrustBundleResponse } from '../security/certificate-service.js';

const crypto = webcrypto as unknown as NonNullable<Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[1]>;

export class AgentError extends MeshbridgeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MB_AGENT_FAILED', message, options);
  }
}

/** How the agent reaches meshbridge: the same credentials as its sidecar's xDS stream. */
export interface ControlPlaneCredentials {
  /** CA of meshbridge's server certificate; absent: plaintext (loopback only). */
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly token?: string;
  /** The name in meshbridge's server certificate, when it is not the address's host. */
  readonly serverName?: string;
}

export interface IssuedWorkloadCertificate {
  /** Made here, never sent anywhere. */
  readonly keyPem: string;
  readonly certChainPem: string;
  readonly trustBundlePem: string;
  readonly spiffeId: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

type SignClient = grpc.Client & {
  Sign(request: SignRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, response?: SignResponse) => void): void;
  TrustBundle(
    request: TrustBundleRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: (error: grpc.ServiceError | null, response?: TrustBundleResponse) => void,
  ): void;
};
const SignClientConstructor = grpc.makeGenericClientConstructor(certificateServiceDefinition, 'WorkloadCertificateService');

/**
 * Creates a key pair here, sends only a CSR (signed with it, so meshbridge
 * knows the caller holds the key), and returns the signed chain with the key.
 */
export async function requestWorkloadCertificate(
  address: string,
  credentials: ControlPlaneCredentials,
  options: { readonly spiffeId?: string; readonly validitySeconds?: number; readonly timeoutMs?: number } = {},
): Promise<IssuedWorkloadCertificate> {
  const keys = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } }, crypto);
  const keyDer = Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = createPrivateKey({ key: keyDer, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }).toString();
  const { client, metadata } = connect(address, credentials);
  try {
    const response = await new Promise<SignResponse>((resolve, reject) =>
      client.Sign(
        { csr: csr.toString('pem'), spiffe_id: options.spiffeId ?? '', validity_seconds: options.validitySeconds ?? 0 },
        metadata,
        { deadline: Date.now() + (options.timeoutMs ?? 15_000) },
        (error, answer) => (error !== null || answer === undefined ? reject(error ?? new Error('no answer')) : resolve(answer)),
      ),
    );
    const chain = response.cert_chain.map((pem) => pem.trim()).join('\n') + '\n';
    const leaf = new x509.X509Certificate(response.cert_chain[0] ?? '');
    return {
      keyPem,
      certChainPem: chain,
      trustBundlePem: response.trust_bundle,
      spiffeId: response.spiffe_id,
      notBefore: leaf.notBefore,
      notAfter: leaf.notAfter,
    };
  } catch (error) {
    throw failure(error, 'the certificate', 'a workload certificate');
  } finally {
    client.close();
  }
}

/** The workload trust bundle as meshbridge hands it out now (during a root rotation, before the new root signs). */
export async function fetchTrustBundle(address: string, credentials: ControlPlaneCredentials, options: { readonly timeoutMs?: number } = {}): Promise<string> {
  const { client, metadata } = connect(address, credentials);
  try {
    const response = await new Promise<TrustBundleResponse>((resolve, reject) =>
      client.TrustBundle({}, metadata, { deadline: Date.now() + (options.timeoutMs ?? 15_000) }, (error, answer) =>
        error !== null || answer === undefined ? reject(error ?? new Error('no answer')) : resolve(answer),
      ),
    );
    if (!response.trust_bundle.includes('-----BEGIN CERTIFICATE-----')) throw new Error('the trust bundle holds no certificate');
    return response.trust_bundle;
  } catch (error) {
    throw failure(error, 'the trust bundle', 'the trust bundle');
  } finally {
    client.close();
  }
}

function connect(address: string, credentials: ControlPlaneCredentials): { client: SignClient; metadata: grpc.Metadata } {
  const channel =
    credentials.ca === undefined
      ? grpc.credentials.createInsecure()
      : grpc.credentials.createSsl(credentials.ca, credentials.key ?? null, credentials.cert ?? null);
  const client = new SignClientConstructor(address, channel, {
    ...(credentials.serverName === undefined ? {} : { 'grpc.ssl_target_name_override': credentials.serverName }),
  }) as unknown as SignClient;
  const metadata = new grpc.Metadata();
  if (credentials.token !== undefined) metadata.set('authorization', `Bearer ${credentials.token}`);
  return { client, metadata };
}

function failure(error: unknown, refused: string, obtain: string): AgentError {
  const status = error as Partial<grpc.ServiceError>;
  if (typeof status.code === 'number') {
    return Object.assign(new AgentError(`meshbridge refused ${refused} (${grpc.status[status.code]}): ${status.details}`, { cause: error }), { grpcCode: status.code });
  }
  return new AgentError(`cannot obtain ${obtain}: ${(error as Error).message}`, { cause: error });
}
