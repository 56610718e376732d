import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');

/** Runs a demo's smoke script: its README's steps, unattended, against real servers. */
function runSmoke(demo: string, timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    // dist/ is built once for the suite (scripts/test.sh), as every other test that runs bin/meshbridge.js expects.
    const env = { ...process.env, MESHBRIDGE_SMOKE_PREBUILT: '1' };
    const child = spawn('bash', [join(ROOT, 'examples/vm', demo, 'smoke.sh')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe('demo READMEs, run start to finish so they cannot rot', () => {
  for (const demo of ['consul-demo', 'eureka-demo']) {
    it(demo, async () => {
      const { code, output } = await runSmoke(demo, 230_000);
      expect(output).toContain(`${demo} smoke: PASSED`);
      expect(code, output).toBe(0);
    }, 240_000);
  }
});
