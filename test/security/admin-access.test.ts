import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostAllowed } from '../../src/security/admin-access.js';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import { tempDir } from '../helpers/tmp.js';

const SERVICES = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: greeter }
spec:
  hosts: [greeter.mesh.local]
  resolution: STATIC
  ports: [{ number: 50051, name: grpc, protocol: GRPC }]
  endpoints:
    - { address: 10.0.0.1 }
`;

interface Answer {
  readonly status: number;
  readonly text: string;
}

function get(url: string, headers: Record<string, string> = {}, ca?: Buffer): Promise<Answer> {
  const secure = url.startsWith('https:');
  return new Promise((resolve, reject) => {
    const req = (secure ? httpsRequest : httpRequest)(url, { headers, timeout: 10_000, ...(ca ? { ca, servername: 'localhost' } : {}) }, (response) => {
      let text = '';
      response.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('Host header check', () => {
  it.each([
    ['127.0.0.1:15014', true],
    ['localhost:15014', true],
    ['[::1]:15014', true],
    ['10.1.2.3:15014', true],
    ['meshbridge.internal:15014', true],
    ['MESHBRIDGE.internal', true],
    ['evil.example.com', false],
    ['localhost.evil.example.com:15014', false],
    ['', false],
    [undefined, false],
  ] as const)('%s -> %s', (host, allowed) => {
    expect(hostAllowed(host, ['meshbridge.internal'])).toBe(allowed);
  });
});

describe('the admin API with no security settings still refuses rebinding Host headers', () => {
  const dir = tempDir('meshbridge-admin-open-');
  let daemon: DaemonProcess;
  let port: number;

  beforeAll(async () => {
    dir.write('meshbridge.yaml', `xds: { listen: 127.0.0.1:0 }\nadmin: { listen: 127.0.0.1:0 }\nregistries:\n  - { kind: file, name: local, paths: ['./*.mesh.yaml'] }\n`);
    dir.write('services.mesh.yaml', SERVICES);
    daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
    port = await daemon.adminPort();
  });

  afterAll(async () => {
    await daemon?.stop();
    dir.remove();
  });

  it('answers 403 to Host: evil.example.com, and serves loopback callers without a token', async () => {
    const evil = await get(`http://127.0.0.1:${port}/debug/configz?view=sidecar`, { host: 'evil.example.com' });
    expect(evil.status).toBe(403);
    expect(evil.text).toContain('evil.example.com');
    expect((await get(`http://127.0.0.1:${port}/debug/registryz`)).status).toBe(200);
  });
});

describe('the admin API over TLS with operator tokens', () => {
  const dir = tempDir('meshbridge-admin-');
  let daemon: DaemonProcess;
  let base: string;
  let ca: Buffer;
  const config = () => `${dir.path}/meshbridge.yaml`;
  const token = async (...args: string[]) => {
    const result = await meshbridge(['token', 'create', '--config', config(), ...args]);
    expect(result.code, result.stderr).toBe(0);
    return result.stdout.trim();
  };

  beforeAll(async () => {
    expect((await meshbridge(['ca', 'create', '--dir', dir.path])).code).toBe(0);
    expect((await meshbridge(['ca', 'issue', '--dir', dir.path, '--server', 'localhost,127.0.0.1', '--out', `${dir.path}/admin`])).code).toBe(0);
    ca = readFileSync(`${dir.path}/ca.crt`);
    dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:0 }
admin:
  listen: 127.0.0.1:0
  tls: { certFile: admin.crt, keyFile: admin.key }
  requireToken: true
  allowedHosts: [meshbridge.internal]
stateDir: ./state
registries:
  - { kind: file, name: local, paths: ['./*.mesh.yaml'] }
`,
    );
    dir.write('services.mesh.yaml', SERVICES);
    daemon = new DaemonProcess(['run', '--config', config()]);
    base = `https://127.0.0.1:${await daemon.adminPort()}`;
  });

  afterAll(async () => {
    await daemon?.stop();
    dir.remove();
  });

  it('keeps /healthz, /readyz and /metrics open', async () => {
    expect((await get(`${base}/healthz`, {}, ca)).status).toBe(200);
    expect([200, 503]).toContain((await get(`${base}/readyz`, {}, ca)).status);
    expect((await get(`${base}/metrics`, {}, ca)).status).toBe(200);
  });

  it('needs an operator token for /debug: none -> 401, a node token -> 403, an operator token -> 200', async () => {
    const none = await get(`${base}/debug/syncz`, {}, ca);
    expect(none.status).toBe(401);
    const node = await get(`${base}/debug/syncz`, { authorization: `Bearer ${await token('--node', 'vm-1')}` }, ca);
    expect(node.status).toBe(403);
    const operator = await get(`${base}/debug/syncz`, { authorization: `Bearer ${await token('--operator', 'alice')}` }, ca);
    expect(operator.status, operator.text).toBe(200);
    expect(JSON.parse(operator.text)).toHaveProperty('proxies');
    await daemon.waitForLog((l) => l.msg.startsWith('admin request refused') && l.status === 401);
  });

  it('checks the Host header before anything: a configured name passes, another is refused', async () => {
    const operator = { authorization: `Bearer ${await token('--operator', 'alice')}` };
    expect((await get(`${base}/debug/registryz`, { ...operator, host: 'meshbridge.internal:15014' }, ca)).status).toBe(200);
    expect((await get(`${base}/debug/registryz`, { ...operator, host: 'evil.example.com' }, ca)).status).toBe(403);
    expect((await get(`${base}/healthz`, { host: 'evil.example.com' }, ca)).status).toBe(403);
  });

  it('`meshbridge status` and `catalog` use --ca and --token-file; without a token they say why', async () => {
    dir.write('alice.token', await token('--operator', 'alice'));
    const status = await meshbridge(['status', '--admin', base, '--ca', `${dir.path}/ca.crt`, '--token-file', `${dir.path}/alice.token`]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toBe('no proxies connected\n');
    const catalog = await meshbridge(['catalog', 'greeter.mesh.local', '--admin', base, '--ca', `${dir.path}/ca.crt`, '--token-file', `${dir.path}/alice.token`]);
    expect(catalog.code, catalog.stderr).toBe(0);
    expect(catalog.stdout).toContain('10.0.0.1');
    const refused = await meshbridge(['status', '--admin', base, '--ca', `${dir.path}/ca.crt`]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('HTTP 401');
    expect(refused.stderr).toContain('needs an operator token');
  });
});
