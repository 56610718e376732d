import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DiscoveryResponse__Output } from '../../src/generated/envoy/service/discovery/v3/DiscoveryResponse.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { RawAdsClient } from '../helpers/ads-client.js';
import { DaemonProcess } from '../helpers/daemon-process.js';
import { tempDir } from '../helpers/tmp.js';

const LDS = TypeUrl.Listener;
const STAY = 'stay.vanish:7001';
const GONE = 'gone.vanish:7000';
const NODE = { id: 'moving-grpc-client', user_agent_name: 'grpc-go' };

const entry = (name: string, port: number) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name} }
spec:
  hosts: [${name}.vanish]
  ports: [{ number: ${port}, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: 1${port} } }]
`;

/** The listeners' bytes in a response, by name. */
function bodies(response: DiscoveryResponse__Output): Map<string, string> {
  const names = RawAdsClient.names(response);
  return new Map(response.resources.map((any, i) => [names[i]!, Buffer.from(any.value).toString('base64')]));
}

/**
 * A service that leaves the catalog stays in the proxyless views of a replica
 * that saw it leave (xds.proxylessRetentionMs); a replica started after that
 * never had it. Two replicas that saw the same history serve the same
 * versions, so a gRPC client moving between them is sent nothing; moving to
 * the one started later, it is sent again the listeners it subscribes to
 * (the type's version differs), the one still there byte for byte the same,
 * the vanished one as a placeholder.
 */
describe('replicas and a vanished service: what a proxyless client moving between them gets', () => {
  const dir = tempDir('meshbridge-replicas-vanished-');
  const daemons: DaemonProcess[] = [];
  const addresses: string[] = [];
  const clients: RawAdsClient[] = [];

  async function start(): Promise<DaemonProcess> {
    const daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
    daemons.push(daemon);
    addresses.push(`127.0.0.1:${await daemon.xdsPort()}`);
    await daemon.waitForLog((l) => l.msg === 'snapshot updated' && l.view === 'proxyless');
    return daemon;
  }

  /** Subscribes to `names` as a fresh stream, optionally resuming from `version`; the first response, ACKed. */
  async function listeners(address: string, names: string[], version?: string): Promise<DiscoveryResponse__Output> {
    const client = new RawAdsClient(address, NODE);
    clients.push(client);
    client.send({ type_url: LDS, resource_names: names, ...(version === undefined ? {} : { version_info: version }) });
    const response = await client.next(10_000);
    client.send({ type_url: LDS, resource_names: names, version_info: response.version_info, response_nonce: response.nonce });
    return response;
  }

  async function silentOnResume(address: string, names: string[], version: string): Promise<void> {
    const client = new RawAdsClient(address, NODE);
    clients.push(client);
    client.send({ type_url: LDS, resource_names: names, version_info: version });
    await client.expectSilence(1_000);
  }

  beforeAll(async () => {
    dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
batching: { debounceMs: 20, maxDelayMs: 100 }
registries: [{ kind: file, name: local, paths: ['./services.yaml'] }]
`,
    );
    dir.write('services.yaml', `${entry('stay', 7001)}---\n${entry('gone', 7000)}`);
    const [first, second] = [await start(), await start()];
    const marks = [first.logs.length, second.logs.length];
    dir.write('services.yaml', entry('stay', 7001));
    await first.waitForLog((l) => l.msg === 'snapshot updated' && l.view === 'proxyless' && l.services === 1, 10_000, marks[0]);
    await second.waitForLog((l) => l.msg === 'snapshot updated' && l.view === 'proxyless' && l.services === 1, 10_000, marks[1]);
    // Started after the service left: it never saw it.
    await start();
  }, 60_000);

  afterAll(async () => {
    clients.forEach((c) => c.close());
    await Promise.all(daemons.map((d) => d.stop()));
    dir.remove();
  });

  it('is sent nothing moving between two replicas that saw the service leave', async () => {
    const onFirst = await listeners(addresses[0]!, [STAY, GONE]);
    // Still served, without endpoints: not a placeholder.
    expect(RawAdsClient.names(onFirst).sort()).toEqual([GONE, STAY].sort());
    expect((await listeners(addresses[1]!, [STAY, GONE])).version_info).toBe(onFirst.version_info);
    await silentOnResume(addresses[1]!, [STAY, GONE], onFirst.version_info);
  });

  it('is sent again what it subscribes to moving to a replica started after the service left: the same bytes, the vanished one as a placeholder', async () => {
    const onFirst = await listeners(addresses[0]!, [STAY, GONE]);
    const onLate = await listeners(addresses[2]!, [STAY, GONE], onFirst.version_info);
    expect(onLate.version_info).not.toBe(onFirst.version_info);
    const [before, after] = [bodies(onFirst), bodies(onLate)];
    expect([...after.keys()].sort()).toEqual([GONE, STAY].sort());
    expect(after.get(STAY)).toBe(before.get(STAY));
    expect(after.get(GONE)).not.toBe(before.get(GONE));

    // Even a client that never asked for the vanished service: the whole type's version differs.
    const stayOnly = await listeners(addresses[0]!, [STAY]);
    const stayOnLate = await listeners(addresses[2]!, [STAY], stayOnly.version_info);
    expect(bodies(stayOnLate)).toEqual(bodies(stayOnly));
  });
});
