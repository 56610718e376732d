import { describe, expect, it } from 'vitest';
import { meshbridge } from '../helpers/daemon-process.js';
import { tempDir } from '../helpers/tmp.js';

const HEAD = 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: ap, namespace: shop }\nspec:\n';

describe('meshbridge validate with AuthorizationPolicy', () => {
  it('reports what cannot be enforced as warnings (exit 0) and a wrong field as an error (exit 1), naming file, document and field', async () => {
    const dir = tempDir();
    try {
      const custom = dir.write('custom.yaml', `${HEAD}  action: CUSTOM\n  provider: { name: opa }\n  rules: [{ to: [{ operation: { paths: ["/admin*"] } }] }]\n---\n${HEAD}  rules: [{ from: [{ source: { ipBlocks: [10.0.0.0/8] } }] }]\n`);
      const warned = await meshbridge(['validate', custom]);
      expect(warned.stdout).toContain(`warning: ${custom}: document 0: spec.action: CUSTOM (external authorization) is not supported: the requests its rules match are denied`);
      expect(warned.stdout).toContain(`warning: ${custom}: document 1: spec.rules[0].from[0].source.ipBlocks: meshbridge cannot enforce this; the ALLOW rule spec.rules[0] is left out`);
      expect(warned.code).toBe(0);

      const bad = dir.write('bad.yaml', `${HEAD}  rules: [{ when: [{ key: "request.headers[x-tenant]", valuez: [gold] }] }]\n`);
      const rejected = await meshbridge(['validate', bad]);
      expect(rejected.stdout).toContain(`error: ${bad}: document 0: spec.rules[0].when[0]: unknown field "valuez"`);
      expect(rejected.code).toBe(1);
    } finally {
      dir.remove();
    }
  });
});
