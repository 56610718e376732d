import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEnvoyApi } from '../../src/xds/protos.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { RawAdsClient } from '../helpers/ads-client.js';
import { RawDeltaClient } from '../helpers/delta-client.js';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import { startEchoBackend, XdsEchoClient } from '../helpers/echo.js';
import type { EchoBackend } from '../helpers/echo.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';

const PORT = 7000;
const host = (i: number) => `svc-${String(i).padStart(2, '0')}.scope.internal`;
const ALL = Array.from({ length: 25 }, (_, i) => host(i));
const TWENTY = ALL.slice(0, 20);

function serviceEntries(backend: EchoBackend): string {
  return ALL.map(
    (h, i) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: svc-${i} }
spec:
  hosts: [${h}]
  resolution: STATIC
  ports: [{ number: ${PORT}, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: ${backend.port} } }]
`,
  ).join('---\n');
}

function sidecarYaml(hosts: readonly string[]): string {
  return `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: vm20, namespace: default }
spec:
  workloadSelector: { labels: { app: vm20 } }
  egress:
    - hosts: [${hosts.map((h) => `"*/${h}"`).join(', ')}]
`;
}

/** Node metadata as Istio writes it: NAMESPACE and a LABELS struct. */
function istioMetadata(labels: Record<string, string>): object {
  return {
    fields: {
      NAMESPACE: { stringValue: 'default' },
      LABELS: { structValue: { fields: Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, { stringValue: v }])) } },
    },
  };
}

function clusterHosts(names: readonly string[]): string[] {
  return names.map((n) => n.split('|')[3]!).sort();
}

describe('Sidecar scope: a VM that calls 20 services gets 20 services', () => {
  const dir = tempDir('meshbridge-scope-');
  let daemon: DaemonProcess;
  let backend: EchoBackend;
  let xds: string;
  let admin: string;
  const clients: { close(): void }[] = [];

  beforeAll(async () => {
    backend = await startEchoBackend('scoped');
    dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
security:
  access:
    - { nodes: ['narrow-*'], services: ['svc-0*.scope.internal', 'svc-2*.scope.internal'] }
batching: { debounceMs: 20, maxDelayMs: 100 }
registries:
  - { kind: file, name: local, paths: ['./services.yaml'] }
policy: { paths: ['./sidecar.yaml'] }
`,
    );
    dir.write('services.yaml', serviceEntries(backend));
    dir.write('sidecar.yaml', sidecarYaml(TWENTY));
    daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
    xds = `127.0.0.1:${await daemon.xdsPort()}`;
    admin = `http://127.0.0.1:${await daemon.adminPort()}`;
    await daemon.waitForLog((l) => l.msg === 'all registries synced');
    await daemon.waitForLog((l) => l.msg === 'snapshot updated');
  });

  afterAll(async () => {
    clients.forEach((c) => c.close());
    await daemon?.stop();
    await backend?.stop();
    dir.remove();
  });

  async function configz(node: string): Promise<{ view: string; types: Record<string, { resources: { name: string }[] }> }> {
    const response = await fetch(`${admin}/debug/configz?node=${node}`);
    expect(response.status).toBe(200);
    return (await response.json()) as { view: string; types: Record<string, { resources: { name: string }[] }> };
  }

  async function sotwClusters(client: RawAdsClient): Promise<string[]> {
    client.send({ type_url: TypeUrl.Cluster });
    const response = await client.next(10_000);
    client.send({ type_url: TypeUrl.Cluster, version_info: response.version_info, response_nonce: response.nonce });
    return RawAdsClient.names(response);
  }

  it('two sidecars the Sidecar selects get its 20 services\' clusters, listeners and endpoints, from one shared view', async () => {
    const a = new RawAdsClient(xds, { id: 'vm-a', user_agent_name: 'envoy', metadata: istioMetadata({ app: 'vm20' }) });
    const b = new RawAdsClient(xds, { id: 'vm-b', user_agent_name: 'envoy', metadata: istioMetadata({ app: 'vm20', version: 'v2' }) });
    clients.push(a, b);
    expect(clusterHosts(await sotwClusters(a))).toEqual(TWENTY);
    expect(clusterHosts(await sotwClusters(b))).toEqual(TWENTY);
    a.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names: ALL.map((h) => `outbound|${PORT}||${h}`) });
    expect(clusterHosts(RawAdsClient.names(await a.next(10_000)))).toEqual(TWENTY);
    a.send({ type_url: TypeUrl.Listener });
    const listeners = await a.next(10_000);
    expect(RawAdsClient.names(listeners)).toEqual([`127.0.0.1_${PORT}`]);
    a.send({ type_url: TypeUrl.RouteConfiguration, resource_names: [String(PORT)] });
    const routes = await a.next(10_000);
    const api = loadEnvoyApi();
    const virtualHosts = routes.resources.flatMap((any) =>
      ((api.unpack(any as { type_url: string; value: Buffer })['virtual_hosts'] as { name: string }[] | undefined) ?? []).map((vh) => vh.name),
    );
    expect(virtualHosts.map((n) => n.replace(/:\d+$/, '')).sort()).toEqual(TWENTY);

    const [viewA, viewB] = [await configz('vm-a'), await configz('vm-b')];
    expect(viewA.view).toBe('sidecar~sidecar:default/vm20');
    expect(viewB.view).toBe(viewA.view);
    expect(viewA.types['CDS']!.resources).toHaveLength(20);
  });

  it('a node the Sidecar does not select gets every service', async () => {
    const other = new RawAdsClient(xds, { id: 'web-1', user_agent_name: 'envoy', metadata: istioMetadata({ app: 'web' }) });
    clients.push(other);
    expect(clusterHosts(await sotwClusters(other))).toEqual(ALL);
    expect((await configz('web-1')).view).toBe('sidecar');
  });

  it('scopes delta streams too', async () => {
    const client = new RawDeltaClient(xds, { id: 'vm-delta', user_agent_name: 'envoy', metadata: istioMetadata({ app: 'vm20' }) });
    clients.push(client);
    client.send({ type_url: TypeUrl.Cluster, resource_names_subscribe: ['*'] });
    expect(clusterHosts(RawDeltaClient.names(await client.next(10_000)))).toEqual(TWENTY);
  });

  it('security.access intersects with the Sidecar, and /debug/configz shows the narrowed view', async () => {
    const client = new RawAdsClient(xds, { id: 'narrow-1', user_agent_name: 'envoy', metadata: istioMetadata({ app: 'vm20' }) });
    clients.push(client);
    const expected = TWENTY.filter((h) => /svc-0\d/.test(h));
    expect(clusterHosts(await sotwClusters(client))).toEqual(expected);
    const view = await configz('narrow-1');
    expect(view.view).toBe('sidecar~sidecar:default/vm20,access:0');
    expect(clusterHosts(view.types['CDS']!.resources.map((r) => r.name))).toEqual(expected);
  });

  it('a proxyless gRPC client labelled by its bootstrap calls a service in its scope and is not given one outside it', async () => {
    const bootstrap = await meshbridge(['bootstrap', '--grpc', '--node-id', 'grpc-vm', '--xds', xds, '--namespace', 'default', '--label', 'app=vm20']);
    expect(bootstrap.code).toBe(0);
    const inScope = new XdsEchoClient(`xds:///${host(3)}:${PORT}`, bootstrap.stdout);
    const outOfScope = new XdsEchoClient(`xds:///${host(22)}:${PORT}`, bootstrap.stdout);
    clients.push(inScope, outOfScope);
    expect((await inScope.call(10_000)).backend).toBe('scoped');
    // The listener is not in the node's view, so it is answered with a placeholder (as a name that does not exist) and the call fails at once.
    const started = Date.now();
    await expect(outOfScope.call(10_000)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((await configz('grpc-vm')).view).toBe('proxyless~sidecar:default/vm20');
    const response = await fetch(`${admin}/debug/configz?view=${encodeURIComponent('proxyless~sidecar:default/vm20')}`);
    const view = (await response.json()) as { types: Record<string, { resources: { name: string }[] }> };
    expect(clusterHosts(view.types['CDS']!.resources.map((r) => r.name))).toEqual(TWENTY);
    // Proxyless listeners are named after the host, with and without the port.
    expect(view.types['LDS']!.resources.map((r) => r.name.replace(/:\d+$/, '')).filter((n, i, all) => all.indexOf(n) === i).sort()).toEqual(TWENTY);
  });

  it('an edit of the Sidecar\'s hosts reaches the streams it selects at once', async () => {
    const client = new RawAdsClient(xds, { id: 'vm-edit', user_agent_name: 'envoy', metadata: istioMetadata({ app: 'vm20' }) });
    clients.push(client);
    expect(clusterHosts(await sotwClusters(client))).toEqual(TWENTY);
    dir.write('sidecar.yaml', sidecarYaml(ALL.slice(0, 5)));
    await eventually(async () => {
      const response = await client.next(10_000);
      client.send({ type_url: TypeUrl.Cluster, version_info: response.version_info, response_nonce: response.nonce });
      expect(clusterHosts(RawAdsClient.names(response))).toEqual(ALL.slice(0, 5));
    }, 20_000);
  });
});
