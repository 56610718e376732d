import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GrpcGoXdsClient } from '../harness/grpc-go/client.js';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import { startEchoBackend } from '../helpers/echo.js';
import type { EchoBackend } from '../helpers/echo.js';
import { tempDir } from '../helpers/tmp.js';

const TARGET = 'xds:///echo.secure.mesh:50051';

function services(backend: EchoBackend): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: echo }
spec:
  hosts: [echo.secure.mesh]
  resolution: STATIC
  ports: [{ number: 50051, name: grpc, protocol: GRPC }]
  endpoints:
    - { address: 127.0.0.1, ports: { grpc: ${backend.port} } }
`;
}

/**
 * grpc-go, the proxyless client most fleets run, reaching meshbridge over
 * mutual TLS (gRFC A65 tls channel_creds) and with a token (gRFC A97
 * jwt_token_file call_creds), each from the bootstrap `meshbridge bootstrap
 * --grpc` prints, then calling a real backend through what it was served.
 */
describe.each([
  ['mutual TLS', true],
  ['a token over TLS', false],
])('grpc-go proxyless client over %s', (_name, mutual) => {
  const dir = tempDir('meshbridge-grpc-go-secure-');
  let daemon: DaemonProcess;
  let backend: EchoBackend;
  let client: GrpcGoXdsClient | undefined;
  let xds: string;

  beforeAll(async () => {
    backend = await startEchoBackend('secure-echo');
    expect((await meshbridge(['ca', 'create', '--dir', dir.path])).code).toBe(0);
    expect((await meshbridge(['ca', 'issue', '--dir', dir.path, '--server', 'localhost,127.0.0.1', '--out', `${dir.path}/server`])).code).toBe(0);
    dir.write('services.yaml', services(backend));
    dir.write(
      'meshbridge.yaml',
      `xds:
  listen: 127.0.0.1:0
  tls: { certFile: server.crt, keyFile: server.key${mutual ? ', clientCaFile: ca.crt' : ''} }
admin: { listen: 127.0.0.1:0 }
stateDir: ./state
batching: { debounceMs: 20, maxDelayMs: 100 }
registries: [{ kind: file, name: local, paths: [services.yaml] }]
`,
    );
    daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
    xds = `127.0.0.1:${await daemon.xdsPort()}`;
  });

  afterAll(async () => {
    delete process.env['GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS'];
    await client?.close();
    await daemon?.stop();
    await backend?.stop();
    dir.remove();
  });

  it('gets its config and calls the backend', async () => {
    const credentials: string[] = ['--ca', `${dir.path}/ca.crt`];
    if (mutual) {
      expect((await meshbridge(['ca', 'issue', '--dir', dir.path, '--node', 'go-vm', '--out', `${dir.path}/go-vm`])).code).toBe(0);
      credentials.push('--cert', `${dir.path}/go-vm.crt`, '--key', `${dir.path}/go-vm.key`);
    } else {
      const token = await meshbridge(['token', 'create', '--config', `${dir.path}/meshbridge.yaml`, '--node', 'go-vm', '--out', `${dir.path}/go-vm.token`]);
      expect(token.code, token.stderr).toBe(0);
      credentials.push('--token-file', `${dir.path}/go-vm.token`);
      // grpc-go reads call_creds from the bootstrap only when asked to.
      process.env['GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS'] = 'true';
    }
    const bootstrap = await meshbridge(['bootstrap', '--grpc', '--node-id', 'go-vm', '--xds', xds, ...credentials]);
    expect(bootstrap.code, bootstrap.stderr).toBe(0);
    client = new GrpcGoXdsClient(bootstrap.stdout);
    const results = await client.call(TARGET, { count: 5, deadlineMs: 20_000 });
    expect(results.map((r) => `${r.code} ${r.backend ?? r.message}`)).toEqual(Array(5).fill('OK secure-echo'));
    const authenticated = await daemon.waitForLog((l) => l.msg === 'xDS stream authenticated' && l.node === 'go-vm');
    if (mutual) expect(authenticated.principal).toBe('spiffe://meshbridge.local/node/go-vm');
    else expect(authenticated.principal).toMatch(/^token:[0-9a-f-]{36}$/);
  }, 120_000);
});
