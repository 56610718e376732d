import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { leftBehind, runSmokeScript } from '../helpers/smoke-script.js';

const ROOT = join(import.meta.dirname, '../..');

describe('demo READMEs, run start to finish so they cannot rot', () => {
  for (const demo of ['consul-demo', 'eureka-demo']) {
    it(`${demo}, leaving nothing running`, async () => {
      // dist/ is built once for the suite (scripts/test.sh), as every other test that runs bin/meshbridge.js expects.
      const env = { ...process.env, MESHBRIDGE_SMOKE_PREBUILT: '1' };
      const { code, output } = await runSmokeScript(join(ROOT, 'examples/vm', demo, 'smoke.sh'), { cwd: ROOT, env, timeoutMs: 230_000 });
      expect(output).toContain(`${demo} smoke: PASSED`);
      expect(code, output).toBe(0);
      await expect.poll(() => leftBehind(output), { timeout: 5_000 }).toEqual([]);
    }, 240_000);
  }
});
