import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import { XdsEchoClient, startEchoBackend } from '../helpers/echo.js';
import type { EchoBackend } from '../helpers/echo.js';
import { freePort } from '../helpers/envoy.js';
import { eventually } from '../helpers/eventually.js';
import { ReplicaAdmin, sentSince } from '../helpers/replica-admin.js';
import { StaticEnvoy } from '../helpers/static-envoy.js';
import { tempDir } from '../helpers/tmp.js';
import { GrpcGoXdsClient } from '../harness/grpc-go/client.js';

const PORT = 7700;
const TARGET = `xds:///echo.behind-lb:${PORT}`;

/** A proxyless client making Echo calls to TARGET on one channel, kept for the whole test. */
interface ProxylessClient {
  /** The backend that answered one call; throws (an `expect`) when the call fails. */
  backendOf(): Promise<string>;
  close(): Promise<void>;
}

const CLIENTS: readonly { readonly name: string; readonly start: (bootstrap: string) => ProxylessClient }[] = [
  {
    name: 'grpc-go',
    start: (bootstrap) => {
      const client = new GrpcGoXdsClient(bootstrap);
      return {
        async backendOf() {
          const [result] = await client.call(TARGET, { deadlineMs: 5_000 });
          expect(result!.code, `${result!.message}\ngrpc-go log:\n${client.log.slice(-2_000)}`).toBe('OK');
          return result!.backend!;
        },
        close: () => client.close(),
      };
    },
  },
  {
    // It reads only the first xds_servers entry: one address in front of the replicas is its only way to more than one.
    name: 'grpc-js-xds',
    start: (bootstrap) => {
      const client = new XdsEchoClient(TARGET, bootstrap);
      return {
        backendOf: async () => (await client.call(5_000)).backend,
        close: async () => client.close(),
      };
    },
  },
];

/**
 * A proxyless xDS client (grpc-go, grpc-js-xds) whose bootstrap names one address: a TCP load
 * balancer (a real Envoy, tcp_proxy, round robin, TCP health checks, outlier detection) in front
 * of two meshbridge replicas fed the same file. This is what the README
 * recommends for proxyless clients, since grpc-go falls back across
 * `xds_servers` only for what it has not cached (gRFC A71) and grpc-js-xds
 * reads only the first. The replica the
 * client's stream is on is killed (SIGKILL): the load balancer drops the
 * connection, the client opens a new stream, which lands on the other replica,
 * and a change made after the kill reaches the same channel, in a client
 * never restarted. Then the killed replica is started again, the other one
 * killed, and the client comes back to the new process the same way. Each
 * time the replica it lands on sends it only what changed (its own metrics).
 */
describe.each(CLIENTS)('$name behind a TCP load balancer in front of two replicas', { timeout: 240_000 }, ({ name, start }) => {
  const NODE = `${name}-behind-lb`;
  const dir = tempDir('meshbridge-behind-lb-');
  const backends: EchoBackend[] = [];
  const replicas: (DaemonProcess | undefined)[] = [];
  const admins: (ReplicaAdmin | undefined)[] = [];
  const configs: string[] = [];
  let balancer: StaticEnvoy;
  let client: ProxylessClient;

  function services(backend: EchoBackend): string {
    return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: echo }
spec:
  hosts: [echo.behind-lb]
  ports: [{ number: ${PORT}, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: ${backend.port} } }]
`;
  }

  const backendOf = (): Promise<string> => client.backendOf();

  async function startReplica(r: number): Promise<void> {
    const daemon = new DaemonProcess(['run', '--config', configs[r]!]);
    replicas[r] = daemon;
    await daemon.xdsPort();
    admins[r] = new ReplicaAdmin(`127.0.0.1:${await daemon.adminPort()}`);
    await daemon.waitForLog((l) => l.msg === 'snapshot updated');
  }

  async function kill(r: number): Promise<void> {
    await replicas[r]!.stop('SIGKILL');
    replicas[r] = undefined;
    admins[r] = undefined;
  }

  /** The replica the client's ADS stream is on: exactly one of those running. */
  const connectedReplica = (): Promise<number> =>
    eventually(async () => {
      const on: number[] = [];
      for (const [r, admin] of admins.entries()) if (admin !== undefined && (await admin.streamsOf(NODE)).length > 0) on.push(r);
      expect(on, 'replicas the client is connected to').toHaveLength(1);
      return on[0]!;
    }, 60_000, 100);

  /** Kills the replica the client is on, changes the file, and checks the client follows on the other one. */
  async function failOver(next: EchoBackend): Promise<void> {
    const victim = await connectedReplica();
    const survivor = 1 - victim;
    const before = await admins[survivor]!.resourcesSent('sotw');
    await kill(victim);
    const killed = Date.now();
    expect(await connectedReplica()).toBe(survivor);
    const moved = Date.now();
    dir.write('services.yaml', services(next));
    const changed = Date.now();
    await eventually(async () => expect(await backendOf()).toBe(next.name), 30_000, 100);
    console.log(
      `[behind-lb ${name}] replica ${victim} killed: stream on replica ${survivor} after ${moved - killed} ms; change served ${Date.now() - changed} ms after the file was written`,
    );
    await eventually(async () => {
      const [stream] = await admins[survivor]!.streamsOf(NODE);
      expect(stream!.types.EDS.status).toBe('SYNCED');
    }, 15_000, 100);
    const sent = sentSince(before, await admins[survivor]!.resourcesSent('sotw'));
    console.log(`[behind-lb ${name}] resources replica ${survivor} sent the client: ${JSON.stringify(sent)}`);
    // The listener, route and cluster it held were not sent again: the client's new stream carried their versions.
    expect(sent).toEqual({ CDS: 0, EDS: 1, LDS: 0, RDS: 0 });
  }

  beforeAll(async () => {
    backends.push(await startEchoBackend('one'), await startEchoBackend('two'));
    dir.write('services.yaml', services(backends[0]!));
    const upstreams: number[] = [];
    for (let r = 0; r < 2; r += 1) {
      // A fixed port, so that a replica started again is where the load balancer looks for it.
      upstreams.push(await freePort());
      configs.push(
        dir.write(
          `replica-${r}.yaml`,
          `xds: { listen: 127.0.0.1:${upstreams[r]} }
admin: { listen: 127.0.0.1:0 }
batching: { debounceMs: 20, maxDelayMs: 100 }
registries: [{ kind: file, name: local, paths: [services.yaml] }]
stateDir: ./state-${r}
`,
        ),
      );
      await startReplica(r);
    }
    const listen = await freePort();
    balancer = await StaticEnvoy.start({
      admin: { address: { socket_address: { address: '127.0.0.1', port_value: 0 } } },
      static_resources: {
        listeners: [
          {
            name: 'meshbridge-xds',
            address: { socket_address: { address: '127.0.0.1', port_value: listen } },
            filter_chains: [
              {
                filters: [
                  {
                    name: 'envoy.filters.network.tcp_proxy',
                    typed_config: {
                      '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
                      stat_prefix: 'meshbridge_xds',
                      cluster: 'replicas',
                      // A replica just killed, not yet seen by the health check: the next connect attempt goes to another.
                      max_connect_attempts: 4,
                    },
                  },
                ],
              },
            ],
          },
        ],
        clusters: [
          {
            name: 'replicas',
            type: 'STATIC',
            connect_timeout: '1s',
            lb_policy: 'ROUND_ROBIN',
            // A refused connect (the replica just died) ejects it at once, before the next health check sees it down:
            // with health checks alone, tcp_proxy's attempts could all go to the dead one and the client waited for its backoff.
            outlier_detection: {
              split_external_local_origin_errors: true,
              consecutive_local_origin_failure: 1,
              enforcing_consecutive_local_origin_failure: 100,
              base_ejection_time: '5s',
            },
            health_checks: [
              { timeout: '1s', interval: '0.5s', no_traffic_interval: '0.5s', unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {} },
            ],
            load_assignment: {
              cluster_name: 'replicas',
              endpoints: [{ lb_endpoints: upstreams.map((port) => ({ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } })) }],
            },
          },
        ],
      },
    });
    const bootstrap = await meshbridge(['bootstrap', '--grpc', '--node-id', NODE, '--xds', `127.0.0.1:${listen}`]);
    expect(bootstrap.code, bootstrap.stderr).toBe(0);
    expect((JSON.parse(bootstrap.stdout) as { xds_servers: unknown[] }).xds_servers).toHaveLength(1);
    client = start(bootstrap.stdout);
  }, 120_000);

  afterAll(async () => {
    await client?.close();
    await balancer?.remove();
    await Promise.all(replicas.map((d) => d?.stop()));
    await Promise.all(backends.map((b) => b.stop()));
    dir.remove();
  }, 60_000);

  it('is served through one replica', async () => {
    expect(await eventually(backendOf, 30_000, 200)).toBe('one');
    const on = await connectedReplica();
    const [stream] = await admins[on]!.streamsOf(NODE);
    expect(stream).toMatchObject({ kind: 'proxyless', protocol: 'sotw' });
  });

  it('follows a change through the other replica once the one it is on is killed', async () => {
    await failOver(backends[1]!);
  });

  it('comes back to the first replica, started again, once the other is killed too', async () => {
    const down = replicas.findIndex((d) => d === undefined);
    await startReplica(down);
    // The load balancer's health check has seen it up (which also ends its ejection) before the other goes.
    await eventually(async () => {
      const stats = await balancer.stats();
      expect(stats.get('cluster.replicas.membership_healthy')).toBe(2);
    }, 30_000, 100);
    await failOver(backends[0]!);
    expect(await connectedReplica()).toBe(down);
  });
});
