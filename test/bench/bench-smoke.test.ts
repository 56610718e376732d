import { execFile } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';

/**
 * `npm run bench` is not part of the suite (its figures are not tests), but it
 * imports the daemon's modules directly, so a change to their shapes can break
 * it unseen: a policy set without the authorization field once crashed its
 * scoped scenario. This runs every scenario and protocol at toy size, against
 * meshbridge and against the go-control-plane yardsticks (built with `go
 * build` on first use), and checks that each produced its figures, without
 * judging them.
 */
describe('the fleet benchmark at toy size', { timeout: 240_000 }, () => {
  const out = tempDir('meshbridge-bench-');
  afterAll(() => out.remove());

  /** Runs bench/run.mjs against meshbridge at toy size with `args`, writing into `out/<name>`, and reads the JSON it wrote. */
  const runBench = async (name: string, args: string[], timeoutMs: number) => {
    const dir = join(out.path, name);
    const toy = ['--clients', '8', '--services', '30', '--endpoints', '60', '--changes', '3', '--workers', '2', '--protocols', 'delta,sotw'];
    const { stdout } = await promisify(execFile)(process.execPath, [join(import.meta.dirname, '../../bench/run.mjs'), ...toy, ...args, '--out', dir], { timeout: timeoutMs });
    const [file] = readdirSync(dir);
    const written = JSON.parse(readFileSync(join(dir, file!), 'utf8')) as { options: Record<string, unknown>; results: Array<Record<string, unknown>> };
    return { stdout, ...written };
  };

  it('runs the fleet, failover and scoped scenarios over delta and SotW against every server, and writes every figure', async () => {
    const servers = ['meshbridge', 'go-snapshot', 'go-linear'];
    const { stdout, results } = await runBench('all-scenarios', ['--servers', servers.join(','), '--scenarios', 'fleet,failover,scoped', '--scoped-clients', '12', '--scope-groups', '2'], 220_000);
    expect(results.filter((r) => r['error'] !== undefined), stdout).toEqual([]);
    expect(results).toHaveLength(2 * 3 * servers.length);
    for (const protocol of ['delta', 'sotw']) {
      for (const server of servers) {
        const of = (scenario: string) => results.find((r) => r['protocol'] === protocol && r['server'] === server && r['scenario'] === scenario);
        expect(of('fleet')).toMatchObject({ connectStormS: expect.any(Number), changeP99Ms: expect.any(Number), peakRssMiB: expect.any(Number), clientErrors: 0 });
        // Half the clients were on the killed replica.
        expect(of('failover')).toMatchObject({ clientsMoved: 4, failoverInSyncS: expect.any(Number), failoverPercentOfStorm: expect.any(Number), clientErrors: 0 });
        // A client sent more than its Sidecar group's view counts as a client error.
        expect(of('scoped')).toMatchObject({ clients: 12, scopedStormS: expect.any(Number), clientErrors: 0 });
      }
    }
    expect(stdout).toMatch(/^failover: every client in sync \(s\)(\s+\d+\.\d+){3}$/m);
    expect(stdout).toMatch(/^scoped: 12 clients all ACKed \(s\)(\s+\d+\.\d+){3}$/m);
  });

  it('drives the clients through grpc-js as well (--client-stack grpc-js), to compare the harness', async () => {
    const { stdout, options, results } = await runBench('grpc-js-clients', ['--servers', 'meshbridge', '--scenarios', 'fleet', '--client-stack', 'grpc-js'], 100_000);
    expect(options['clientStack']).toBe('grpc-js');
    expect(results.map((r) => [r['protocol'], r['clientErrors'], typeof r['changeP99Ms']]), stdout).toEqual([
      ['delta', 0, 'number'],
      ['sotw', 0, 'number'],
    ]);
  });

  it('measures the server CPU per ACK-sized message over grpc-js and over node:http2 (npm run bench:ack-read)', async () => {
    const script = join(import.meta.dirname, '../../bench/ack-read.mjs');
    const { stdout } = await promisify(execFile)(process.execPath, [script, '--clients', '8', '--bytes', '40000', '--rounds', '3'], { timeout: 60_000 });
    const figures = [...stdout.matchAll(/^(\S+(?:, copied)?)\s+server CPU per message: median (\d+) µs/gm)].map((m) => [m[1], Number(m[2])]);
    expect(figures.map(([transport]) => transport), stdout).toEqual(['grpc-js', 'node:http2, copied', 'node:http2']);
    for (const [, micros] of figures) expect(micros).toBeGreaterThan(0);
  });
});
