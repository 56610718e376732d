import { describe, expect, it } from 'vitest';
import { stringMatch } from '../../src/istio/traffic-fields.js';

/** A VirtualService regex is run by Envoy on RE2; one RE2 refuses must be refused here, not NACKed by every proxy. */
describe('VirtualService string matches are checked as RE2', () => {
  for (const regex of ['(?=/api)/api.*', '(a)\\1', '(?<!x)y']) {
    it(`refuses ${regex}`, () => {
      const result = stringMatch.safeParse({ regex });
      expect(result.success).toBe(false);
      expect(result.error!.issues[0]!.message).toMatch(/^invalid regular expression: regex: not an RE2 regular expression/);
    });
  }

  it('accepts RE2 syntax JavaScript also knows, and a backtracking bomb RE2 runs in linear time', () => {
    for (const regex of ['/api/v[0-9]+/.*', '(a|a)*b', '(?i)/Users']) expect(stringMatch.safeParse({ regex }).success).toBe(true);
  });
});
