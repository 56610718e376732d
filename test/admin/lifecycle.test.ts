import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CatalogzBody } from '../../src/admin/debug.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { RawAdsClient } from '../helpers/ads-client.js';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';

const serviceEntry = (host: string, address: string) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${host.split('.')[0]} }
spec:
  hosts: [${host}]
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints: [{ address: ${address} }]
`;

const config = (paths: string, extra = '') => `xds: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
batching: { debounceMs: 20, maxDelayMs: 100 }
${extra}registries:
  - { kind: file, name: local, paths: [${paths}] }
`;

describe('daemon lifecycle: startup logs, SIGHUP reload, SIGTERM drain', () => {
  const dir = tempDir();
  let daemon: DaemonProcess;
  let admin: string;

  const hosts = async () => {
    const response = await fetch(`http://${admin}/debug/catalogz`);
    return ((await response.json()) as CatalogzBody).services.map((s) => s.hostname);
  };
  const metric = async (series: string) => {
    const text = await (await fetch(`http://${admin}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };

  beforeAll(async () => {
    dir.write('a.mesh.yaml', serviceEntry('a.mesh.local', '10.0.0.1'));
    dir.write('b.mesh.yaml', serviceEntry('b.mesh.local', '10.0.0.2'));
    dir.write('meshbridge.yaml', config("'./a.mesh.yaml'"));
    daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
    admin = `127.0.0.1:${await daemon.adminPort()}`;
  });

  afterAll(async () => {
    await daemon.stop('SIGKILL');
    dir.remove();
  });

  it('says at startup what it waits for, and each registry\'s first sync with a count', async () => {
    const waiting = await daemon.waitForLog((l) => l.msg === 'waiting for: local');
    expect(waiting.waitingFor).toEqual(['local']);
    const synced = await daemon.waitForLog((l) => l.msg === 'local: 1 services synced');
    expect(synced).toMatchObject({ registry: 'local', services: 1 });
    await daemon.waitForLog((l) => l.msg === 'meshbridge started');
    await eventually(async () => expect(await hosts()).toEqual(['a.mesh.local']));
  });

  it('SIGHUP applies a valid new config: registries, batching and log level', async () => {
    const from = daemon.logs.length;
    dir.write('meshbridge.yaml', config("'./a.mesh.yaml', './b.mesh.yaml'", 'log: { level: debug }\n'));
    daemon.signal('SIGHUP');
    const reloaded = await daemon.waitForLog((l) => l.msg.startsWith('config reloaded'), 10_000, from);
    expect(reloaded.applied).toEqual(['registry local changed', 'log.level']);
    await eventually(async () => expect(await hosts()).toEqual(['a.mesh.local', 'b.mesh.local']));
    expect(await metric('meshbridge_config_reloads_total{result="success"}')).toBe(1);
  });

  it('SIGHUP with an invalid config logs why and keeps the running config', async () => {
    const from = daemon.logs.length;
    dir.write('meshbridge.yaml', config("'./b.mesh.yaml'").replace('debounceMs: 20', 'debounceMs: -5'));
    daemon.signal('SIGHUP');
    const failed = await daemon.waitForLog((l) => l.msg.startsWith('config reload failed'), 10_000, from);
    expect(failed.level).toBe(50);
    expect(failed.msg).toContain('the running config stays in force');
    expect(failed.msg).toContain(`${dir.path}/meshbridge.yaml: batching.debounceMs`);
    expect(await metric('meshbridge_config_reloads_total{result="failure"}')).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await hosts()).toEqual(['a.mesh.local', 'b.mesh.local']);
    expect((await fetch(`http://${admin}/readyz`)).status).toBe(200);

    dir.write('meshbridge.yaml', 'registries: [\n');
    daemon.signal('SIGHUP');
    const syntax = await daemon.waitForLog((l) => l.msg.startsWith('config reload failed') && l.msg.includes('YAML syntax'), 10_000, from);
    expect(syntax.level).toBe(50);
    expect(await hosts()).toEqual(['a.mesh.local', 'b.mesh.local']);
  });

  it('SIGHUP warns that a new listen address or backlog needs a restart', async () => {
    const from = daemon.logs.length;
    dir.write('meshbridge.yaml', config("'./a.mesh.yaml', './b.mesh.yaml'", 'log: { level: debug }\n').replace('xds: { listen: 127.0.0.1:0 }', 'xds: { listen: 127.0.0.1:15999, listenBacklog: 64 }'));
    daemon.signal('SIGHUP');
    const warning = await daemon.waitForLog((l) => l.msg.startsWith('changed in the config but applied only by a restart'), 10_000, from);
    expect(warning.needsRestart).toEqual(['xds.listen', 'xds.listenBacklog']);
    await daemon.waitForLog((l) => l.msg === 'config reloaded: nothing changed', 10_000, from);
  });

  it('SIGHUP starts a policy reader for new policy paths, keeping the registries running', async () => {
    const from = daemon.logs.length;
    dir.write(
      'reviews.policy.yaml',
      `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: a }
spec:
  host: a.mesh.local
  trafficPolicy: { loadBalancer: { simple: RANDOM } }
`,
    );
    dir.write(
      'meshbridge.yaml',
      config("'./a.mesh.yaml', './b.mesh.yaml'", "log: { level: debug }\npolicy: { paths: ['./*.policy.yaml'] }\n").replace(
        'xds: { listen: 127.0.0.1:0 }',
        'xds: { listen: 127.0.0.1:15999 }',
      ),
    );
    daemon.signal('SIGHUP');
    const reloaded = await daemon.waitForLog((l) => l.msg.startsWith('config reloaded'), 10_000, from);
    expect(reloaded.applied).toEqual(['policy']);
    type Clusters = { types: { CDS: { resources: { name: string; body: { lb_policy?: string } }[] } } };
    await eventually(async () => {
      const body = (await (await fetch(`http://${admin}/debug/configz?view=sidecar`)).json()) as Clusters;
      expect(body.types.CDS.resources.find((r) => r.name === 'outbound|80||a.mesh.local')?.body.lb_policy).toBe('RANDOM');
    });
  });

  it('SIGTERM drains connected streams and exits 0 within 10 s', async () => {
    const xds = `127.0.0.1:${await daemon.xdsPort()}`;
    const client = new RawAdsClient(xds, { id: 'draining-vm', user_agent_name: 'envoy' });
    client.send({ type_url: TypeUrl.Cluster });
    await client.next();
    const started = Date.now();
    daemon.signal('SIGTERM');
    expect(await daemon.exit()).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    await eventually(() => expect(client.ended).toBe(true), 2_000);
    expect(daemon.logs.some((l) => l.msg === 'draining')).toBe(true);
    expect(daemon.logs.some((l) => l.msg === 'stopped')).toBe(true);
    client.close();
  });
});

describe('daemon start failures', () => {
  it('exits 1 with the reason when the admin port is taken, without hanging', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as AddressInfo).port;
    const dir = tempDir();
    dir.write('a.mesh.yaml', serviceEntry('a.mesh.local', '10.0.0.1'));
    const file = dir.write('meshbridge.yaml', config("'./a.mesh.yaml'").replace('admin: { listen: 127.0.0.1:0 }', `admin: { listen: 127.0.0.1:${port} }`));
    const started = Date.now();
    const result = await meshbridge(['run', '--config', file]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`cannot listen for the admin API on 127.0.0.1:${port}`);
    expect(Date.now() - started).toBeLessThan(10_000);
    blocker.close();
    dir.remove();
  });
});
