import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import { startEchoBackend } from '../helpers/echo.js';
import type { EchoBackend } from '../helpers/echo.js';
import { eventually, sleep } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { GrpcGoXdsClient } from '../harness/grpc-go/client.js';

/**
 * grpc-go falling back across the xds_servers of its bootstrap (gRFC A71),
 * written by `meshbridge bootstrap --grpc --xds A --xds B`, with two replicas
 * reading the same files. A is killed (SIGKILL). grpc-go falls back only where
 * it needs a resource it has not cached (A71): a channel that already has its
 * configuration keeps serving it; a new channel (grpc-go 1.85 gives each
 * target an xDS client of its own) finds A gone before it got an answer and
 * asks B, and from then on follows changes through B. The channel that did
 * not fall back follows changes again once A is back on its address.
 */
const PORT = 7600;
const FIRST = `xds:///first.fallback:${PORT}`;
const SECOND = `xds:///second.fallback:${PORT}`;

function services(first: EchoBackend, second: EchoBackend): string {
  return ['first', 'second']
    .map(
      (name) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name} }
spec:
  hosts: [${name}.fallback]
  ports: [{ number: ${PORT}, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: ${(name === 'first' ? first : second).port} } }]
`,
    )
    .join('---\n');
}

describe('grpc-go falling back from a killed meshbridge to the next in its bootstrap', { timeout: 180_000 }, () => {
  const dir = tempDir();
  let one: EchoBackend;
  let two: EchoBackend;
  let primary: DaemonProcess;
  let secondary: DaemonProcess;
  let client: GrpcGoXdsClient;

  const backendOf = async (target: string): Promise<string> => {
    const [result] = await client.call(target, { deadlineMs: 5_000 });
    expect(result!.code, result!.message).toBe('OK');
    return result!.backend!;
  };

  beforeAll(async () => {
    one = await startEchoBackend('one');
    two = await startEchoBackend('two');
    dir.write('services.yaml', services(one, one));
    const config = (name: string) =>
      dir.write(
        `${name}.yaml`,
        `xds: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
batching: { debounceMs: 50, maxDelayMs: 200 }
registries: [{ kind: file, name: local, paths: [services.yaml] }]
stateDir: ./state-${name}
`,
      );
    secondary = new DaemonProcess(['run', '--config', config('secondary')]);
    const b = await secondary.xdsPort();
    // The primary is restarted where it was: pick its port by binding once, then hand it over.
    primary = new DaemonProcess(['run', '--config', config('primary')]);
    const a = await primary.xdsPort();
    dir.write('primary.yaml', readFileSync(join(dir.path, 'primary.yaml'), 'utf8').replace('listen: 127.0.0.1:0 }', `listen: 127.0.0.1:${a} }`));
    const bootstrap = await meshbridge(['bootstrap', '--grpc', '--node-id', 'fallback-client', '--xds', `127.0.0.1:${a}`, '--xds', `127.0.0.1:${b}`]);
    expect(bootstrap.code, bootstrap.stderr).toBe(0);
    expect((JSON.parse(bootstrap.stdout) as { xds_servers: unknown[] }).xds_servers).toHaveLength(2);
    client = new GrpcGoXdsClient(bootstrap.stdout);
  });

  afterAll(async () => {
    await client?.close();
    await primary?.stop();
    await secondary?.stop();
    await one?.stop();
    await two?.stop();
    dir.remove();
  });

  it('a new channel reaches the second server once the first is killed, and follows changes through it', async () => {
    expect(await backendOf(FIRST)).toBe('one');

    await primary.stop('SIGKILL');
    const killed = Date.now();
    // The channel that has its configuration keeps serving it.
    expect(await backendOf(FIRST)).toBe('one');

    const served = await eventually(async () => backendOf(SECOND), 30_000, 100);
    const failoverMs = Date.now() - killed;
    expect(served).toBe('one');
    console.log(`[xds-fallback grpc-go] primary killed -> first call of a new channel served through the secondary after ${failoverMs} ms`);

    dir.write('services.yaml', services(two, two));
    const changed = Date.now();
    await eventually(async () => expect(await backendOf(SECOND)).toBe('two'), 30_000, 100);
    console.log(`[xds-fallback grpc-go] change followed through the secondary after ${Date.now() - changed} ms`);

    // The channel set up through the primary keeps what it has (A71: no resource it needs is missing, so no fallback) ...
    await sleep(2_000);
    expect(await backendOf(FIRST)).toBe('one');
    // ... until the primary is back where it was, which grpc-go keeps retrying.
    primary = new DaemonProcess(['run', '--config', `${dir.path}/primary.yaml`], {});
    const restarted = Date.now();
    await eventually(async () => expect(await backendOf(FIRST)).toBe('two'), 60_000, 200);
    console.log(`[xds-fallback grpc-go] the primary's own channel followed the change ${Date.now() - restarted} ms after the primary restarted`);
  });
});
