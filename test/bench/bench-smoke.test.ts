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
 * scoped scenario. This runs every scenario and protocol against meshbridge at
 * toy size and checks that each produced its figures, without judging them.
 */
describe('the fleet benchmark at toy size', { timeout: 240_000 }, () => {
  const out = tempDir('meshbridge-bench-');
  afterAll(() => out.remove());

  /** Runs bench/run.mjs against meshbridge at toy size with `args`, writing into `out/<name>`, and reads the JSON it wrote. */
  const runBench = async (name: string, args: string[], timeoutMs: number) => {
    const dir = join(out.path, name);
    const toy = ['--clients', '8', '--services', '30', '--endpoints', '60', '--changes', '3', '--workers', '2', '--servers', 'meshbridge', '--protocols', 'delta,sotw'];
    const { stdout } = await promisify(execFile)(process.execPath, [join(import.meta.dirname, '../../bench/run.mjs'), ...toy, ...args, '--out', dir], { timeout: timeoutMs });
    const [file] = readdirSync(dir);
    const written = JSON.parse(readFileSync(join(dir, file!), 'utf8')) as { options: Record<string, unknown>; results: Array<Record<string, unknown>> };
    return { stdout, ...written };
  };

  it('runs the fleet, failover and scoped scenarios over delta and SotW, and writes every figure', async () => {
    const { stdout, results } = await runBench('all-scenarios', ['--scenarios', 'fleet,failover,scoped', '--scoped-clients', '12', '--scope-groups', '2'], 200_000);
    expect(results.filter((r) => r['error'] !== undefined), stdout).toEqual([]);
    for (const protocol of ['delta', 'sotw']) {
      const of = (scenario: string | undefined) => results.find((r) => r['protocol'] === protocol && r['scenario'] === scenario);
      expect(of(undefined)).toMatchObject({ server: 'meshbridge', connectStormS: expect.any(Number), changeP99Ms: expect.any(Number), peakRssMiB: expect.any(Number), clientErrors: 0 });
      expect(of('failover')).toMatchObject({ failoverInSyncS: expect.any(Number), failoverMiB: expect.any(Number) });
      expect(of('scoped')).toMatchObject({ clients: 12, scopedStormS: expect.any(Number) });
    }
  });

  it('drives the clients through grpc-js as well (--client-stack grpc-js), to compare the harness', async () => {
    const { stdout, options, results } = await runBench('grpc-js-clients', ['--scenarios', 'fleet', '--client-stack', 'grpc-js'], 100_000);
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
