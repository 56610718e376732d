import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import protobuf from 'protobufjs';
import { identitiesOfNode, workloadSpiffeId } from '../model/service.js';
import type { ServiceCatalog } from '../model/catalog.js';
import type { PeerIdentity } from './identity.js';
import { CsrRejectedError, MAX_CSR_BYTES } from './workload-ca.js';
import type { WorkloadCa } from './workload-ca.js';

/**
 * `meshbridge.ca.v1.WorkloadCertificateService`, served on the xDS port:
 *
 *   service WorkloadCertificateService {
 *     rpc Sign(SignRequest) returns (SignResponse);
 *     rpc TrustBundle(TrustBundleRequest) returns (TrustBundleResponse);
 *   }
 *   message SignRequest  { string csr = 1; string spiffe_id = 2; uint32 validity_seconds = 3; }
 *   message SignResponse { repeated string cert_chain = 1; string trust_bundle = 2; string spiffe_id = 3; string not_after = 4; }
 *   message TrustBundleRequest {}
 *   message TrustBundleResponse { string trust_bundle = 1; }
 *
 * Like Istio's IstioCertificateService, the caller sends only a CSR: the
 * identity comes from who the caller is (its node, through the same
 * certificate or token as its xDS stream) and what the catalog says runs on
 * that node, never from the CSR. TrustBundle lets an agent learn of a new
 * root between renewals: a rotation then needs to wait only for agents' bundle
 * refresh before the new root signs, not for half a certificate lifetime.
 */

export const CERTIFICATE_SERVICE_PATH = '/meshbridge.ca.v1.WorkloadCertificateService/Sign';
export const TRUST_BUNDLE_PATH = '/meshbridge.ca.v1.WorkloadCertificateService/TrustBundle';

export interface SignRequest {
  readonly csr: string;
  /** Which of its identities the node asks for; may be empty when it holds exactly one. */
  readonly spiffe_id: string;
  /** Requested lifetime; 0 for the server's default, never more than its maximum. */
  readonly validity_seconds: number;
}

export interface SignResponse {
  /** Leaf first. */
  readonly cert_chain: string[];
  readonly trust_bundle: string;
  readonly spiffe_id: string;
  /** RFC 3339. */
  readonly not_after: string;
}

export type TrustBundleRequest = Record<string, never>;

export interface TrustBundleResponse {
  /** PEM roots: during a rotation, the old and the new. */
  readonly trust_bundle: string;
}

const root = protobuf.Root.fromJSON({
  nested: {
    SignRequest: {
      fields: { csr: { type: 'string', id: 1 }, spiffe_id: { type: 'string', id: 2 }, validity_seconds: { type: 'uint32', id: 3 } },
    },
    SignResponse: {
      fields: {
        cert_chain: { rule: 'repeated', type: 'string', id: 1 },
        trust_bundle: { type: 'string', id: 2 },
        spiffe_id: { type: 'string', id: 3 },
        not_after: { type: 'string', id: 4 },
      },
    },
    TrustBundleRequest: { fields: {} },
    TrustBundleResponse: { fields: { trust_bundle: { type: 'string', id: 1 } } },
  },
});
const TO_OBJECT = { defaults: true, arrays: true } as const;

/** A unary method whose request and response are the named messages of `root`. */
function unaryMethod<Request, Response>(path: string, requestName: string, responseName: string): grpc.MethodDefinition<Request, Response> {
  const [requestType, responseType] = [root.lookupType(requestName), root.lookupType(responseName)];
  return {
    path,
    requestStream: false,
    responseStream: false,
    requestSerialize: (value: Request) => Buffer.from(requestType.encode(requestType.fromObject(value as object)).finish()),
    requestDeserialize: (bytes: Buffer) => requestType.toObject(requestType.decode(bytes), TO_OBJECT) as Request,
    responseSerialize: (value: Response) => Buffer.from(responseType.encode(responseType.fromObject(value as object)).finish()),
    responseDeserialize: (bytes: Buffer) => responseType.toObject(responseType.decode(bytes), TO_OBJECT) as Response,
  };
}

/** The gRPC definition, for the server and for `meshbridge agent`'s client alike. */
export const certificateServiceDefinition: grpc.ServiceDefinition = {
  Sign: unaryMethod<SignRequest, SignResponse>(CERTIFICATE_SERVICE_PATH, 'SignRequest', 'SignResponse'),
  TrustBundle: unaryMethod<TrustBundleRequest, TrustBundleResponse>(TRUST_BUNDLE_PATH, 'TrustBundleRequest', 'TrustBundleResponse'),
};

export interface CertificateServiceOptions {
  readonly trustDomain: string;
  readonly defaultTtlMs: number;
  readonly maxTtlMs: number;
  /** The caller's identity, established as for its xDS stream (xds-guard). */
  readonly authenticate: (call: grpc.ServerUnaryCall<SignRequest | TrustBundleRequest, SignResponse | TrustBundleResponse>) => Promise<PeerIdentity | { error: string }>;
  readonly catalog: () => ServiceCatalog;
  readonly ca: () => WorkloadCa;
  readonly onSigned?: (outcome: 'signed' | 'refused') => void;
  /** Signings in progress at once; more are refused with RESOURCE_EXHAUSTED (the agent retries), so a flood cannot take the event loop. */
  readonly maxConcurrent: number;
}

/** The request size limit: a CSR and a SPIFFE ID, with room to spare; gRPC refuses more before decoding. */
export const MAX_SIGN_REQUEST_BYTES = MAX_CSR_BYTES + 4096;

export function certificateServiceHandlers(options: CertificateServiceOptions, log: Logger): grpc.UntypedServiceImplementation {
  let inFlight = 0;
  const sign = async (call: grpc.ServerUnaryCall<SignRequest, SignResponse>): Promise<SignResponse> => {
    if (inFlight >= options.maxConcurrent) {
      throw status(grpc.status.RESOURCE_EXHAUSTED, `${inFlight} certificates are being signed; retry later`);
    }
    inFlight += 1;
    try {
      return await signCounted(call);
    } finally {
      inFlight -= 1;
    }
  };
  const signCounted = async (call: grpc.ServerUnaryCall<SignRequest, SignResponse>): Promise<SignResponse> => {
    const caller = await options.authenticate(call);
    if ('error' in caller) throw status(grpc.status.UNAUTHENTICATED, caller.error);
    if (caller.role !== 'node' || caller.name === undefined) {
      throw status(grpc.status.PERMISSION_DENIED, `${caller.principal} is not a node identity; only nodes obtain workload certificates`);
    }
    const allowed = identitiesOfNode(options.catalog().services, caller.name).map((id) => workloadSpiffeId(options.trustDomain, id));
    const request = call.request;
    let spiffeId = request.spiffe_id;
    if (spiffeId === '') {
      if (allowed.length !== 1) {
        throw status(
          grpc.status.PERMISSION_DENIED,
          allowed.length === 0
            ? `node ${caller.name} runs no workload with an identity in the catalog`
            : `node ${caller.name} holds ${allowed.length} identities (${allowed.join(', ')}); name one in spiffe_id`,
        );
      }
      spiffeId = allowed[0]!;
    } else if (!allowed.includes(spiffeId)) {
      throw status(grpc.status.PERMISSION_DENIED, `node ${caller.name} may not hold ${spiffeId.slice(0, 300)} (it may hold: ${allowed.join(', ') || 'nothing'})`);
    }
    const ttlMs = request.validity_seconds > 0 ? Math.min(request.validity_seconds * 1000, options.maxTtlMs) : options.defaultTtlMs;
    try {
      const issued = await options.ca().sign(request.csr, spiffeId, { ttlMs });
      log.info({ node: caller.name, principal: caller.principal, spiffeId, notAfter: issued.notAfter.toISOString() }, 'workload certificate signed');
      return {
        cert_chain: issued.certChainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)!.map((pem) => `${pem}\n`),
        trust_bundle: issued.trustBundlePem,
        spiffe_id: spiffeId,
        not_after: issued.notAfter.toISOString(),
      };
    } catch (error) {
      if (error instanceof CsrRejectedError) throw status(grpc.status.INVALID_ARGUMENT, error.message);
      throw error;
    }
  };
  const trustBundle = async (call: grpc.ServerUnaryCall<TrustBundleRequest, TrustBundleResponse>): Promise<TrustBundleResponse> => {
    const caller = await options.authenticate(call);
    if ('error' in caller) throw status(grpc.status.UNAUTHENTICATED, caller.error);
    // The bundle is no secret, but it is the agents' business: the same callers as Sign.
    if (caller.role !== 'node' || caller.name === undefined) {
      throw status(grpc.status.PERMISSION_DENIED, `${caller.principal} is not a node identity; only nodes fetch the workload trust bundle`);
    }
    return { trust_bundle: options.ca().trustBundle() };
  };
  return {
    TrustBundle: (call: grpc.ServerUnaryCall<TrustBundleRequest, TrustBundleResponse>, callback: grpc.sendUnaryData<TrustBundleResponse>) => {
      trustBundle(call).then(
        (response) => callback(null, response),
        (error: unknown) => {
          const known = error as Partial<grpc.StatusObject>;
          if (typeof known.code === 'number') {
            log.warn({ peer: call.getPeer(), code: grpc.status[known.code] }, `workload trust bundle refused: ${known.details}`);
            callback(error as grpc.ServiceError);
            return;
          }
          callback({ code: grpc.status.INTERNAL, details: `trust bundle unavailable: ${(error as Error).message}` });
        },
      );
    },
    Sign: (call: grpc.ServerUnaryCall<SignRequest, SignResponse>, callback: grpc.sendUnaryData<SignResponse>) => {
      sign(call).then(
        (response) => {
          options.onSigned?.('signed');
          callback(null, response);
        },
        (error: unknown) => {
          options.onSigned?.('refused');
          const known = error as Partial<grpc.StatusObject>;
          if (typeof known.code === 'number') {
            log.warn({ peer: call.getPeer(), code: grpc.status[known.code] }, `workload certificate refused: ${known.details}`);
            callback(error as grpc.ServiceError);
            return;
          }
          log.error({ err: error, peer: call.getPeer() }, 'workload certificate signing failed');
          callback({ code: grpc.status.INTERNAL, details: `signing failed: ${(error as Error).message}` });
        },
      );
    },
  };
}

function status(code: grpc.status, details: string): Partial<grpc.StatusObject> & Error {
  return Object.assign(new Error(details), { code, details });
}
