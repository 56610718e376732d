import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { leftBehind, runSmokeScript } from '../helpers/smoke-script.js';
import { envoyBin } from './envoy-process.js';

const ROOT = join(import.meta.dirname, '../..');

describe('README "Securing meshbridge", run start to finish so it cannot rot', () => {
  it('examples/vm/secure-smoke.sh passes against a real Envoy 1.40, and leaves nothing running', async () => {
    const env = { ...process.env, MESHBRIDGE_ENVOY_BIN: envoyBin() };
    const { code, output } = await runSmokeScript(join(ROOT, 'examples/vm/secure-smoke.sh'), { cwd: ROOT, env, timeoutMs: 170_000 });
    expect(output).toContain('secure smoke: PASSED');
    expect(code, output).toBe(0);
    await expect.poll(() => leftBehind(output), { timeout: 5_000 }).toEqual([]);
  }, 180_000);
});
