import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CatalogzBody, ConfigzBody, SynczBody } from '../../src/admin/debug.js';
import type { ClientStatusResponse__Output } from '../../src/generated/envoy/service/status/v3/ClientStatusResponse.js';
import { loadEnvoyApi } from '../../src/xds/protos.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { RawAdsClient } from '../helpers/ads-client.js';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';

const CDS = TypeUrl.Cluster;
const EDS = TypeUrl.ClusterLoadAssignment;
const LDS = TypeUrl.Listener;
const RDS = TypeUrl.RouteConfiguration;
const GREETER_CLUSTER = 'outbound|50051||greeter.mesh.local';
const WEB_CLUSTER = 'outbound|8080||web.mesh.local';
const NACK_MESSAGE = 'cluster outbound|8080||web.mesh.local: rejected on purpose by the test';

const SERVICES = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: greeter }
spec:
  hosts: [greeter.mesh.local]
  resolution: STATIC
  ports: [{ number: 50051, name: grpc, protocol: GRPC }]
  endpoints:
    - { address: 10.0.0.1, ports: { grpc: 50061 }, locality: eu/eu-1, serviceAccount: greeter }
    - { address: 10.0.0.2, ports: { grpc: 50062 }, locality: eu/eu-2 }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: web }
spec:
  hosts: [web.mesh.local]
  resolution: STATIC
  ports: [{ number: 8080, name: http, protocol: HTTP }]
  endpoints:
    - { address: 10.0.1.1 }
`;

/** Requests a type, waits for the answer and ACKs it; returns the answer. */
async function requestAndAck(client: RawAdsClient, typeUrl: string, names: string[] = []) {
  client.send({ type_url: typeUrl, resource_names: names });
  const response = await client.next();
  expect(response.type_url).toBe(typeUrl);
  client.send({ type_url: typeUrl, resource_names: names, version_info: response.version_info, response_nonce: response.nonce });
  return response;
}

describe('admin API, CSDS and the status/catalog CLI against a running daemon with two proxies', () => {
  const dir = tempDir();
  let daemon: DaemonProcess;
  let admin: string;
  let xds: string;
  let good: RawAdsClient;
  let bad: RawAdsClient;
  let goodCdsVersion: string;
  let badCdsVersion: string;

  const get = async (path: string) => {
    const response = await fetch(`http://${admin}${path}`);
    return { status: response.status, type: response.headers.get('content-type') ?? '', text: await response.text() };
  };
  const getJson = async <T>(path: string): Promise<T> => {
    const { status, text } = await get(path);
    expect(status, text).toBe(200);
    return JSON.parse(text) as T;
  };

  beforeAll(async () => {
    dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
batching: { debounceMs: 20, maxDelayMs: 100 }
security: { trustDomain: mesh.example }
registries:
  - { kind: file, name: local, paths: ['./*.mesh.yaml'] }
`,
    );
    dir.write('services.mesh.yaml', SERVICES);
    daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
    xds = `127.0.0.1:${await daemon.xdsPort()}`;
    admin = `127.0.0.1:${await daemon.adminPort()}`;
    await eventually(async () => expect((await get('/readyz')).status).toBe(200), 10_000);

    good = new RawAdsClient(xds, { id: 'vm-good', cluster: 'web', user_agent_name: 'envoy' } as { id: string });
    goodCdsVersion = (await requestAndAck(good, CDS)).version_info;
    await requestAndAck(good, EDS, [GREETER_CLUSTER, WEB_CLUSTER]);
    await requestAndAck(good, LDS);
    await requestAndAck(good, RDS, ['8080']);

    bad = new RawAdsClient(xds, { id: 'vm-bad', cluster: 'db', user_agent_name: 'envoy' } as { id: string });
    bad.send({ type_url: CDS });
    const rejected = await bad.next();
    badCdsVersion = rejected.version_info;
    bad.send({ type_url: CDS, version_info: '', response_nonce: rejected.nonce, error_detail: { code: 3, message: NACK_MESSAGE } });
    await requestAndAck(bad, LDS);

    // Both proxies' last answers have reached the daemon.
    await eventually(async () => {
      const body = await getJson<SynczBody>('/debug/syncz');
      expect(body.proxies.find((p) => p.node === 'vm-good')?.types.RDS.status).toBe('SYNCED');
      expect(body.proxies.find((p) => p.node === 'vm-bad')?.types.LDS.status).toBe('SYNCED');
      expect(body.proxies.find((p) => p.node === 'vm-bad')?.types.CDS.status).toBe('NACKED');
    });
  });

  afterAll(async () => {
    good?.close();
    bad?.close();
    expect(await daemon.stop()).toBe(0);
    dir.remove();
  });

  it('answers /healthz and /readyz', async () => {
    expect(await get('/healthz')).toMatchObject({ status: 200, text: 'ok\n' });
    expect(await get('/readyz')).toMatchObject({ status: 200, text: 'ready\n' });
    expect((await get('/nope')).status).toBe(404);
    expect((await get('/')).text).toContain('/debug/configz');
  });

  it('exposes Prometheus metrics: proxies, pushes and NACKs by type, push latency, registry sync, catalog size', async () => {
    const { status, type, text } = await get('/metrics');
    expect(status).toBe(200);
    expect(type).toContain('text/plain');
    const value = (series: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      expect(line, `${series} in\n${text}`).toBeDefined();
      return Number(line!.slice(series.length + 1));
    };
    expect(value('meshbridge_xds_connected_proxies{protocol="sotw",kind="sidecar"}')).toBe(2);
    expect(value('meshbridge_xds_nacks_total{type="CDS"}')).toBe(1);
    expect(value('meshbridge_xds_nacks_total{type="LDS"}')).toBe(0);
    expect(value('meshbridge_xds_pushes_total{type="CDS"}')).toBe(2);
    expect(value('meshbridge_xds_pushes_total{type="LDS"}')).toBe(2);
    expect(value('meshbridge_xds_acks_total{type="CDS"}')).toBe(1);
    expect(value('meshbridge_xds_push_latency_seconds_count{type="LDS"}')).toBe(2);
    expect(value('meshbridge_xds_push_latency_seconds_bucket{le="10",type="RDS"}')).toBe(1);
    expect(value('meshbridge_registry_synced{registry="local",kind="file"}')).toBe(1);
    expect(value('meshbridge_registry_stale{registry="local",kind="file"}')).toBe(0);
    expect(value('meshbridge_registry_sync_age_seconds{registry="local",kind="file"}')).toBeGreaterThanOrEqual(0);
    expect(value('meshbridge_registry_last_sync_timestamp_seconds{registry="local",kind="file"}')).toBeGreaterThan(Date.now() / 1000 - 120);
    expect(value('meshbridge_registry_errors_total{registry="local"}')).toBe(0);
    expect(value('meshbridge_catalog_services')).toBe(2);
    expect(value('meshbridge_catalog_endpoints')).toBe(3);
    expect(value('meshbridge_catalog_conflicts')).toBe(0);
    expect(text).toContain('process_cpu_seconds_total');
  });

  it('/debug/syncz shows each proxy with address, connection time and per-type versions, the NACK with its error', async () => {
    const { proxies } = await getJson<SynczBody>('/debug/syncz');
    expect(proxies.map((p) => p.node)).toEqual(['vm-bad', 'vm-good']);
    const [badProxy, goodProxy] = proxies as [SynczBody['proxies'][number], SynczBody['proxies'][number]];
    expect(goodProxy).toMatchObject({ cluster: 'web', view: 'sidecar', kind: 'sidecar', locality: '', userAgent: 'envoy', protocol: 'sotw' });
    expect(goodProxy.address).toMatch(/^(ipv4:)?127\.0\.0\.1:\d+$/);
    expect(Date.now() - Date.parse(goodProxy.connectedSince)).toBeLessThan(60_000);
    expect(goodProxy.types.CDS).toMatchObject({ status: 'SYNCED', versionSent: goodCdsVersion, versionAcked: goodCdsVersion, nack: null, wildcard: true });
    expect(goodProxy.types.EDS).toMatchObject({ status: 'SYNCED', subscribed: [GREETER_CLUSTER, WEB_CLUSTER].sort() });
    expect(goodProxy.types.RDS.status).toBe('SYNCED');
    expect(badProxy.types.CDS).toMatchObject({ status: 'NACKED', versionSent: badCdsVersion, versionAcked: null });
    expect(badProxy.types.CDS.nack).toMatchObject({ version: badCdsVersion, message: NACK_MESSAGE });
    expect(badProxy.types.LDS.status).toBe('SYNCED');
    expect(badProxy.types.EDS.status).toBe('NOT SENT');
  });

  it('/debug/catalogz lists the merged catalog with every endpoint\'s source registry and identity', async () => {
    const body = await getJson<CatalogzBody>('/debug/catalogz');
    expect(body.services.map((s) => s.hostname)).toEqual(['greeter.mesh.local', 'web.mesh.local']);
    expect(body.services[0]).toMatchObject({
      ports: [{ number: 50051, name: 'grpc', protocol: 'GRPC' }],
      registries: ['local'],
      endpoints: [
        {
          address: '10.0.0.1',
          ports: { grpc: 50061 },
          health: 'HEALTHY',
          locality: 'eu/eu-1',
          registry: 'local',
          identity: 'spiffe://mesh.example/ns/default/sa/greeter',
        },
        { address: '10.0.0.2', ports: { grpc: 50062 }, health: 'HEALTHY', locality: 'eu/eu-2', registry: 'local' },
      ],
    });
    expect(body.services[0]!.endpoints[1]).not.toHaveProperty('identity');
    expect(body.conflicts).toEqual([]);
    const one = await getJson<CatalogzBody>('/debug/catalogz?host=web.mesh.local');
    expect(one.services.map((s) => s.hostname)).toEqual(['web.mesh.local']);
  });

  it('/debug/registryz shows each registry\'s state, last success and last error', async () => {
    const { registries } = await getJson<{ registries: Record<string, unknown>[] }>('/debug/registryz');
    expect(registries).toHaveLength(1);
    expect(registries[0]).toMatchObject({ name: 'local', kind: 'file', state: 'synced', services: 2, endpoints: 3, lastError: null, diagnostics: [] });
    expect(Date.now() - Date.parse(registries[0]!.lastSyncAt as string)).toBeLessThan(60_000);
  });

  it('/debug/configz?node=ID returns the resources that node subscribes to, from its view', async () => {
    const body = await getJson<ConfigzBody>('/debug/configz?node=vm-good');
    expect(body).toMatchObject({ node: 'vm-good', view: 'sidecar' });
    expect(body.types.CDS.resources.map((r) => r.name)).toEqual([GREETER_CLUSTER, WEB_CLUSTER]);
    expect(body.types.CDS.resources[1]!.body).toMatchObject({ name: WEB_CLUSTER, type: 'EDS' });
    expect(body.types.RDS.resources.map((r) => r.name)).toEqual(['8080']);
    expect(body.types.LDS.resources.map((r) => r.name)).toEqual(['127.0.0.1_50051', '127.0.0.1_8080']);
    const badBody = await getJson<ConfigzBody>('/debug/configz?node=vm-bad');
    expect(badBody.types.EDS).toMatchObject({ requested: false, resources: [] });
    const unknown = await get('/debug/configz?node=nobody');
    expect(unknown.status).toBe(404);
    expect(JSON.parse(unknown.text).error).toContain('"nobody" is not connected');
    expect((await get('/debug/configz')).status).toBe(400);
    expect((await get('/debug/configz?view=bogus')).status).toBe(400);
    // A view no node uses yet is translated for the asker: what a sidecar there would get.
    const elsewhere = await getJson<ConfigzBody>('/debug/configz?view=sidecar@nowhere//');
    expect(elsewhere.types.CDS.resources.map((r) => r.name)).toEqual([GREETER_CLUSTER, WEB_CLUSTER]);
    const view = await getJson<ConfigzBody>('/debug/configz?view=proxyless');
    expect(view.types.LDS.resources.map((r) => r.name)).toContain('greeter.mesh.local:50051');
  });

  it('serves CSDS on the xDS port: every client with per-resource status, the NACK as ERROR with its details', async () => {
    const { ClientStatusDiscoveryService } = loadEnvoyApi().csds.envoy.service.status.v3;
    const client = new ClientStatusDiscoveryService(xds, grpc.credentials.createInsecure());
    try {
      const fetchStatus = (request: object) =>
        new Promise<ClientStatusResponse__Output>((resolve, reject) =>
          client.FetchClientStatus(request, (error, response) => (error ? reject(error) : resolve(response!))),
        );
      const all = await fetchStatus({});
      expect(all.config.map((c) => c.node?.id).sort()).toEqual(['vm-bad', 'vm-good']);
      const badConfig = all.config.find((c) => c.node?.id === 'vm-bad')!;
      const badClusters = badConfig.generic_xds_configs.filter((g) => g.type_url === CDS);
      expect(badClusters.map((g) => g.name)).toEqual([GREETER_CLUSTER, WEB_CLUSTER]);
      for (const cluster of badClusters) {
        expect(cluster).toMatchObject({ config_status: 'ERROR', client_status: 'NACKED', version_info: badCdsVersion });
        expect(cluster.error_state).toMatchObject({ details: NACK_MESSAGE, version_info: badCdsVersion });
        expect(cluster.xds_config?.type_url).toBe(CDS);
      }
      expect(badConfig.generic_xds_configs.filter((g) => g.type_url === LDS).every((g) => g.config_status === 'SYNCED')).toBe(true);

      const only = await fetchStatus({ node_matchers: [{ node_id: { exact: 'vm-good' } }], exclude_resource_contents: true });
      expect(only.config.map((c) => c.node?.id)).toEqual(['vm-good']);
      const goodConfigs = only.config[0]!.generic_xds_configs;
      expect(goodConfigs.filter((g) => g.type_url === EDS).map((g) => g.name)).toEqual([GREETER_CLUSTER, WEB_CLUSTER]);
      expect(goodConfigs.every((g) => g.config_status === 'SYNCED' && g.client_status === 'ACKED' && g.xds_config === null)).toBe(true);

      const stream = client.StreamClientStatus();
      const answer = new Promise<ClientStatusResponse__Output>((resolve) => stream.once('data', resolve));
      stream.write({ node_matchers: [{ node_id: { prefix: 'vm-b' } }] });
      expect((await answer).config.map((c) => c.node?.id)).toEqual(['vm-bad']);
      stream.end();
    } finally {
      client.close();
    }
  });

  it('meshbridge status prints a proxy-status table, and the NACK with its message', async () => {
    const { stdout, code } = await meshbridge(['status', '--admin', admin]);
    expect(code, stdout).toBe(0);
    const lines = stdout.split('\n');
    expect(lines[0]).toMatch(/^NAME\s+CLUSTER\s+VIEW\s+CDS\s+LDS\s+EDS\s+RDS\s+ADDRESS\s+CONNECTED$/);
    expect(lines.find((l) => l.startsWith('vm-good'))).toMatch(/^vm-good\s+web\s+sidecar\s+SYNCED\s+SYNCED\s+SYNCED\s+SYNCED\s+\S+\s+\d+s$/);
    expect(lines.find((l) => l.startsWith('vm-bad '))).toMatch(/^vm-bad\s+db\s+sidecar\s+NACKED\s+SYNCED\s+NOT SENT\s+NOT SENT\s/);
    expect(stdout).toContain(`vm-bad CDS NACKED version ${badCdsVersion}`);
    expect(stdout).toContain(NACK_MESSAGE);

    const one = await meshbridge(['status', 'vm-bad', '--admin', admin]);
    expect(one.code).toBe(0);
    expect(one.stdout).toMatch(/^CDS\s+NACKED\s+\S+\s+-\s+\*\s+cluster outbound/m);
    expect((await meshbridge(['status', 'nobody', '--admin', admin])).code).toBe(1);
  });

  it('meshbridge catalog prints services and endpoints with health, source and identity', async () => {
    const { stdout, code } = await meshbridge(['catalog', '--admin', admin]);
    expect(code, stdout).toBe(0);
    const lines = stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^SERVICE\s+PORTS\s+ENDPOINT\s+HEALTH\s+WEIGHT\s+LOCALITY\s+SOURCE\s+IDENTITY$/);
    expect(lines.slice(1)).toHaveLength(3);
    expect(lines[1]).toMatch(
      /^greeter\.mesh\.local\s+50051\/GRPC\s+10\.0\.0\.1:50061\s+HEALTHY\s+1\s+eu\/eu-1\s+local\s+spiffe:\/\/mesh\.example\/ns\/default\/sa\/greeter$/,
    );
    expect(lines[2]).toMatch(/^greeter\.mesh\.local\s+50051\/GRPC\s+10\.0\.0\.2:50062\s+HEALTHY\s+1\s+eu\/eu-2\s+local\s+-$/);
    expect(lines[3]).toMatch(/^web\.mesh\.local\s+8080\/HTTP\s+10\.0\.1\.1:8080\s+HEALTHY\s+1\s+-\s+local\s+-$/);

    const one = await meshbridge(['catalog', 'web.mesh.local', '--admin', admin]);
    expect(one.stdout.trimEnd().split('\n')).toHaveLength(2);
    const missing = await meshbridge(['catalog', 'nope.mesh.local', '--admin', admin]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no service "nope.mesh.local"');
  });

  it('status and catalog fail with a clear message when no daemon answers', async () => {
    const result = await meshbridge(['status', '--admin', '127.0.0.1:1']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('cannot reach the meshbridge admin API at http://127.0.0.1:1');
  });
});
