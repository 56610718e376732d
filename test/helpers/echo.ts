import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as grpcXds from '@grpc/grpc-js-xds';

grpcXds.register();

const ECHO_PROTO = join(import.meta.dirname, '../../examples/quickstart/echo.proto');
// grpc-js-xds reads a per-channel bootstrap from this option, so each test can point at its own daemon.
export const BOOTSTRAP_OPTION = 'grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config';

type EchoReply = { message: string; backend: string };
interface EchoClient extends grpc.Client {
  Echo(
    request: { message: string },
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: (error: grpc.ServiceError | null, reply?: EchoReply) => void,
  ): grpc.ClientUnaryCall;
}
type EchoClientConstructor = new (target: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => EchoClient;

const echoPackage = grpc.loadPackageDefinition(protoLoader.loadSync(ECHO_PROTO)) as unknown as {
  meshbridge: { example: { Echo: EchoClientConstructor & { service: grpc.ServiceDefinition } } };
};
const Echo = echoPackage.meshbridge.example.Echo;

export interface EchoBackend {
  readonly name: string;
  readonly port: number;
  stop(): Promise<void>;
  /** Drops every connection at once, as a crashed process would. */
  crash(): void;
}

export interface EchoBackendOptions {
  /** Listen on this port (a restarted backend comes back where it was); a free one by default. */
  readonly port?: number;
  /** Answer every `failEvery`-th call (the 1st, the n+1st, ...) with `failWith` instead of echoing. */
  readonly failEvery?: number;
  readonly failWith?: grpc.status;
  /** Hold every answer this long, so calls overlap (circuit breaking). */
  readonly delayMs?: number;
  /** Serve TLS with this certificate; with `clientCa`, require a client certificate it signed. */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer; readonly clientCa?: Buffer };
}

function serverCredentials(options: EchoBackendOptions): grpc.ServerCredentials {
  const { tls } = options;
  if (tls === undefined) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(tls.clientCa ?? null, [{ private_key: tls.key, cert_chain: tls.cert }], tls.clientCa !== undefined);
}

/** A real gRPC server on loopback that answers with its own name. */
export async function startEchoBackend(name: string, options: EchoBackendOptions = {}): Promise<EchoBackend> {
  const server = new grpc.Server();
  let calls = 0;
  server.addService(Echo.service, {
    Echo: (call: grpc.ServerUnaryCall<{ message: string }, EchoReply>, callback: grpc.sendUnaryData<EchoReply>) => {
      const failing = options.failEvery !== undefined && calls++ % options.failEvery === 0;
      const answer = () =>
        failing
          ? callback({ code: options.failWith ?? grpc.status.UNAVAILABLE, details: `${name} fails on purpose` })
          : callback(null, { message: call.request.message, backend: name });
      if (options.delayMs !== undefined) setTimeout(answer, options.delayMs);
      else answer();
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${options.port ?? 0}`, serverCredentials(options), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  return {
    name,
    port,
    stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
    crash: () => server.forceShutdown(),
  };
}

export interface CallOutcome {
  readonly byBackend: Map<string, number>;
  readonly errors: Map<string, number>;
}

export class XdsEchoClient {
  private readonly client: EchoClient;

  /** `credentials`: insecure by default; grpc-js-xds's XdsChannelCredentials use the TLS a cluster asks for. */
  constructor(target: string, bootstrapJson: string, credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure()) {
    this.client = new Echo(target, credentials, { [BOOTSTRAP_OPTION]: bootstrapJson });
  }

  call(deadlineMs = 5_000, metadata = new grpc.Metadata()): Promise<EchoReply> {
    return new Promise((resolve, reject) =>
      this.client.Echo({ message: 'hi' }, metadata, { deadline: Date.now() + deadlineMs }, (error, reply) =>
        error ? reject(error) : resolve(reply!),
      ),
    );
  }

  /** Makes `count` calls, a few at a time, and counts who answered and which errors came back. */
  async callMany(count: number, deadlineMs = 5_000): Promise<CallOutcome> {
    const byBackend = new Map<string, number>();
    const errors = new Map<string, number>();
    for (let i = 0; i < count; i += 10) {
      const batch = Array.from({ length: Math.min(10, count - i) }, () => this.call(deadlineMs));
      for (const result of await Promise.allSettled(batch)) {
        if (result.status === 'fulfilled') byBackend.set(result.value.backend, (byBackend.get(result.value.backend) ?? 0) + 1);
        else {
          const code = grpc.status[(result.reason as grpc.ServiceError).code] ?? 'UNKNOWN';
          errors.set(code, (errors.get(code) ?? 0) + 1);
        }
      }
    }
    return { byBackend, errors };
  }

  close(): void {
    this.client.close();
  }
}
