import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import { startEchoBackend } from '../helpers/echo.js';
import type { EchoBackend } from '../helpers/echo.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import { proxylessClient } from '../harness/grpc-go/proxyless-clients.js';
import type { CallResult, ProxylessClient, ProxylessKind } from '../harness/grpc-go/proxyless-clients.js';

/**
 * A proxyless client dialling a name meshbridge does not serve
 * (`xds:///nope.dne:1`) fails its calls at once (issue 11, defect 6).
 *
 * gRPC clients do not take a state-of-the-world response that leaves out a
 * name they never received as proof that it does not exist (gRFC A27):
 * grpc-go used to wait its own 15 s timer and grpc-js-xds 1.14 until the
 * call's deadline. meshbridge now answers such a name with a placeholder
 * Listener whose one virtual host has no route (src/xds/server/placeholders.ts),
 * so both fail with UNAVAILABLE and their own "no route" message. The real Listener replaces it when the service
 * appears, on the same channel, and it comes back when the service goes.
 * Figures (first call to fail, per client, over several runs) go to the log.
 */
const PORT = 7400;
const KNOWN = `xds:///known.dne:${PORT}`;
const MISSING = 'xds:///nope.dne:1';
/** Far under gRPC's 15 s does-not-exist timer; a loaded machine still answers in well under a second. */
const FAIL_FAST_MS = 5_000;
/** The call deadline: past the timer, so a client that waited for it would show it. */
const DEADLINE_MS = 20_000;
const RUNS = 3;

const KNOWN_ENTRY = (backendPort: number) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: known }
spec:
  hosts: [known.dne]
  ports: [{ number: ${PORT}, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: ${backendPort} } }]
`;
const NOPE_ENTRY = (backendPort: number) => `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: nope }
spec:
  hosts: [nope.dne]
  ports: [{ number: 1, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: ${backendPort} } }]
`;

/** What each client says when no route takes the call: all a gRPC client can be made to say without waiting. */
const REASON: Record<ProxylessKind, RegExp> = {
  'grpc-go': /no matched route was found/,
  'grpc-js': /Failed to route call to method \/\S+/,
};

function expectFailedFast(kind: ProxylessKind, result: CallResult): void {
  expect(result.code, result.message).toBe('UNAVAILABLE');
  expect(result.message).toMatch(REASON[kind]);
  expect(result.elapsedMs).toBeLessThan(FAIL_FAST_MS);
}

describe.each(['grpc-go', 'grpc-js'] as const)('%s calling a name that does not exist', { timeout: 180_000 }, (kind) => {
  const dir = tempDir();
  let known: EchoBackend;
  let nope: EchoBackend;
  let daemon: DaemonProcess;
  let bootstrap: string;
  let adminPort: number;

  /** The proxyless streams of the node that watch `name`: their LDS status in /debug/syncz. */
  const ldsOf = async (name: string) => {
    const syncz = (await (await fetch(`http://127.0.0.1:${adminPort}/debug/syncz`)).json()) as {
      proxies: Array<{ node: string; types: { LDS: { subscribed: string[]; nack: unknown; placeholders: string[] } } }>;
    };
    return syncz.proxies.filter((p) => p.node === `dne-${kind}` && p.types.LDS.subscribed.includes(name)).map((p) => p.types.LDS);
  };

  beforeAll(async () => {
    known = await startEchoBackend('known');
    nope = await startEchoBackend('nope');
    dir.write('services.yaml', KNOWN_ENTRY(known.port));
    // No retention of a vanished service, so that removing it brings the placeholder back (see "xds.proxylessRetentionMs").
    dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:0, proxylessRetentionMs: 0 }
admin: { listen: 127.0.0.1:0 }
batching: { debounceMs: 50, maxDelayMs: 200 }
registries: [{ kind: file, name: local, paths: [services.yaml] }]
`,
    );
    daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
    const port = await daemon.xdsPort();
    adminPort = await daemon.adminPort();
    bootstrap = (await meshbridge(['bootstrap', '--grpc', '--node-id', `dne-${kind}`, '--xds', `127.0.0.1:${port}`])).stdout;
  });

  afterAll(async () => {
    await daemon?.stop();
    await known?.stop();
    await nope?.stop();
    dir.remove();
  });

  it(`fails at once (under ${FAIL_FAST_MS} ms, ${RUNS} fresh clients), with UNAVAILABLE and the reason`, async () => {
    const elapsed: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const client = proxylessClient(kind, bootstrap);
      try {
        const [ok] = await client.call(KNOWN, { deadlineMs: DEADLINE_MS });
        expect(ok!.code, ok!.message).toBe('OK');
        const [result] = await client.call(MISSING, { deadlineMs: DEADLINE_MS });
        expectFailedFast(kind, result!);
        elapsed.push(result!.elapsedMs);
        if (run === 0) console.log(`[does-not-exist ${kind}] ${result!.code}: ${result!.message}`);
      } finally {
        await client.close();
      }
    }
    console.log(`[does-not-exist ${kind}] first call to a missing name failed after ${elapsed.join(', ')} ms (${RUNS} fresh clients)`);
    // The placeholder was taken, not NACKed.
    for (const lds of await ldsOf('nope.dne:1')) expect(lds.nack).toBeNull();
  });

  it('the same channel succeeds once the service is added, and fails fast again once it is removed', async () => {
    const client: ProxylessClient = proxylessClient(kind, bootstrap);
    try {
      const [before] = await client.call(MISSING, { deadlineMs: DEADLINE_MS });
      expectFailedFast(kind, before!);
      await eventually(async () => expect((await ldsOf('nope.dne:1')).map((l) => l.placeholders)).toContainEqual(['nope.dne:1']), 10_000);
      const status = await meshbridge(['status', `dne-${kind}`, '--admin', `127.0.0.1:${adminPort}`]);
      expect(status.stdout).toContain("LDS names that do not exist (a placeholder fails the client's calls at once): nope.dne:1");

      dir.write('services.yaml', KNOWN_ENTRY(known.port) + NOPE_ENTRY(nope.port));
      const added = Date.now();
      const served = await eventually(async () => {
        const [result] = await client.call(MISSING, { deadlineMs: 2_000 });
        expect(result!.code, result!.message).toBe('OK');
        return result!;
      }, 30_000, 100);
      expect(served.backend).toBe('nope');
      console.log(`[does-not-exist ${kind}] service added: first call served ${Date.now() - added} ms after the file was written`);
      const lds = await ldsOf('nope.dne:1');
      expect(lds.length).toBeGreaterThan(0);
      for (const type of lds) {
        expect(type.nack).toBeNull();
        expect(type.placeholders).toEqual([]);
      }

      dir.write('services.yaml', KNOWN_ENTRY(known.port));
      const removed = Date.now();
      const failed = await eventually(async () => {
        const [result] = await client.call(MISSING, { deadlineMs: DEADLINE_MS });
        expect(result!.code).not.toBe('OK');
        return result!;
      }, 30_000, 100);
      expectFailedFast(kind, failed);
      console.log(`[does-not-exist ${kind}] service removed: calls fail fast ${Date.now() - removed} ms after the file was written`);
      for (const type of await ldsOf('nope.dne:1')) expect(type.nack).toBeNull();
    } finally {
      await client.close();
    }
  });
});
