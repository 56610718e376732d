import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import { startEchoBackend } from '../helpers/echo.js';
import type { EchoBackend } from '../helpers/echo.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { proxylessClient, tally } from '../harness/grpc-go/proxyless-clients.js';

/**
 * Issue 11, defect 5 (TLS): a DestinationRule `tls: SIMPLE` or `MUTUAL` with
 * certificate files reaches proxyless clients as certificate provider
 * instances, which `meshbridge bootstrap --grpc --policy FILE` declares with
 * gRPC's file_watcher plugin. grpc-go (xDS credentials) then calls real TLS
 * backends, one of which requires its client certificate; grpc-js-xds, whose
 * test channel uses insecure credentials, must at least accept the clusters.
 */
const PORT = 7700;

describe('DestinationRule TLS for proxyless clients, through certificate provider instances', () => {
  const dir = tempDir('meshbridge-upstream-tls-');
  let simple: EchoBackend;
  let mutual: EchoBackend;
  let daemon: DaemonProcess;
  let xdsPort: number;
  let adminPort: number;

  const nacksOf = async (node: string): Promise<string[]> => {
    const syncz = (await (await fetch(`http://127.0.0.1:${adminPort}/debug/syncz`)).json()) as {
      proxies: Array<{ node: string; types: Record<string, { nack: { message: string } | null }> }>;
    };
    return syncz.proxies
      .filter((p) => p.node === node)
      .flatMap((p) => Object.entries(p.types).flatMap(([type, status]) => (status.nack ? [`${type}: ${status.nack.message}`] : [])));
  };

  beforeAll(async () => {
    // A CA, a certificate for the backends (localhost, 127.0.0.1) and one for the client.
    expect((await meshbridge(['ca', 'create', '--dir', dir.path])).code).toBe(0);
    expect((await meshbridge(['ca', 'issue', '--dir', dir.path, '--server', 'localhost,127.0.0.1', '--out', `${dir.path}/backend`])).code).toBe(0);
    expect((await meshbridge(['ca', 'issue', '--dir', dir.path, '--node', 'tls-client', '--out', `${dir.path}/client`])).code).toBe(0);
    const cert = readFileSync(`${dir.path}/backend.crt`);
    const key = readFileSync(`${dir.path}/backend.key`);
    simple = await startEchoBackend('simple', { tls: { cert, key } });
    mutual = await startEchoBackend('mutual', { tls: { cert, key, clientCa: readFileSync(`${dir.path}/ca.crt`) } });
    const entry = (host: string, backend: EchoBackend) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${host} }
spec:
  hosts: [${host}.tls]
  ports: [{ number: ${PORT}, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: ${backend.port} } }]
`;
    dir.write('services.yaml', [entry('simple', simple), entry('mutual', mutual)].join('---\n'));
    dir.write(
      'policy.yaml',
      `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: simple }
spec:
  host: simple.tls
  trafficPolicy:
    tls: { mode: SIMPLE, caCertificates: ${dir.path}/ca.crt, subjectAltNames: [localhost] }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: mutual }
spec:
  host: mutual.tls
  trafficPolicy:
    tls: { mode: MUTUAL, caCertificates: ${dir.path}/ca.crt, clientCertificate: ${dir.path}/client.crt, privateKey: ${dir.path}/client.key }
`,
    );
    dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
registries: [{ kind: file, name: local, paths: [services.yaml] }]
policy: { paths: [policy.yaml] }
`,
    );
    daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
    xdsPort = await daemon.xdsPort();
    adminPort = await daemon.adminPort();
    const accepted = await daemon.waitForLog((l) => l.msg === 'file accepted' && String(l.file).endsWith('policy.yaml'), 10_000);
    expect(accepted.documents).toBe(2);
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    await simple?.stop();
    await mutual?.stop();
    dir.remove();
  });

  const bootstrapFor = async (node: string) => {
    const printed = await meshbridge(['bootstrap', '--grpc', '--node-id', node, '--xds', `127.0.0.1:${xdsPort}`, '--policy', `${dir.path}/policy.yaml`]);
    expect(printed.code, printed.stderr).toBe(0);
    return printed.stdout;
  };

  it('bootstrap --grpc --policy declares one file_watcher instance per CA and per client certificate', async () => {
    const bootstrap = JSON.parse(await bootstrapFor('tls-inspect')) as { certificate_providers: Record<string, { plugin_name: string; config: Record<string, string> }> };
    expect(Object.values(bootstrap.certificate_providers).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)))).toEqual([
      { plugin_name: 'file_watcher', config: { ca_certificate_file: `${dir.path}/ca.crt`, refresh_interval: '600s' } },
      { plugin_name: 'file_watcher', config: { certificate_file: `${dir.path}/client.crt`, private_key_file: `${dir.path}/client.key`, refresh_interval: '600s' } },
    ]);
  });

  it('grpc-go calls a TLS backend and a backend requiring its client certificate, with no NACK', async () => {
    const node = 'tls-grpc-go';
    const client = proxylessClient('grpc-go', await bootstrapFor(node));
    try {
      await eventually(async () => {
        expect(tally(await client.call(`xds:///simple.tls:${PORT}`, { count: 3, deadlineMs: 10_000 }))).toEqual({ byBackend: { simple: 3 }, errors: {} });
      }, 20_000, 200);
      expect(tally(await client.call(`xds:///mutual.tls:${PORT}`, { count: 3, deadlineMs: 10_000 }))).toEqual({ byBackend: { mutual: 3 }, errors: {} });
      expect(await nacksOf(node)).toEqual([]);
    } finally {
      await client.close();
    }
  }, 60_000);

  it('grpc-js-xds accepts the clusters (its test channel does not use xDS credentials)', async () => {
    const node = 'tls-grpc-js';
    const client = proxylessClient('grpc-js', await bootstrapFor(node));
    try {
      await client.call(`xds:///simple.tls:${PORT}`, { count: 1, deadlineMs: 3_000 });
      await eventually(async () => {
        const syncz = (await (await fetch(`http://127.0.0.1:${adminPort}/debug/syncz`)).json()) as { proxies: Array<{ node: string }> };
        expect(syncz.proxies.some((p) => p.node === node)).toBe(true);
      }, 10_000, 200);
      expect(await nacksOf(node)).toEqual([]);
    } finally {
      await client.close();
    }
  }, 60_000);
});
