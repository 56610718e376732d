import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { envoyBin } from './envoy-process.js';

const ROOT = join(import.meta.dirname, '../..');

describe('README "Securing meshbridge", run start to finish so it cannot rot', () => {
  it('examples/vm/secure-smoke.sh passes against a real Envoy 1.40', async () => {
    const bin = envoyBin();
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn('bash', [join(ROOT, 'examples/vm/secure-smoke.sh')], {
        cwd: ROOT,
        env: { ...process.env, MESHBRIDGE_ENVOY_BIN: bin },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let text = '';
      child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (text += chunk.toString()));
      const timer = setTimeout(() => child.kill('SIGTERM'), 170_000);
      child.on('exit', (exitCode) => {
        clearTimeout(timer);
        resolve({ code: exitCode, output: text });
      });
    });
    expect(output).toContain('secure smoke: PASSED');
    expect(code, output).toBe(0);
  }, 180_000);
});
