import { z } from 'zod';
import { compileSafeRegex } from '../util/safe-regex.js';
import { portNumber } from './fields.js';

const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1, us: 0.001, µs: 0.001, ns: 0.000001 };

/** Istio's durations ("10s", "1.5s", "100ms", "1m30s"), as milliseconds. */
export const duration = z
  .string({ error: 'must be a duration such as "10s" or "250ms"' })
  .transform((value, ctx) => {
    const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)/g)];
    if (parts.length === 0 || parts.map((p) => p[0]).join('') !== value) {
      ctx.addIssue({ code: 'custom', message: `"${value}" is not a duration such as "10s" or "250ms"` });
      return z.NEVER;
    }
    return parts.reduce((ms, [, amount, unit]) => ms + Number(amount) * UNIT_MS[unit!]!, 0);
  });

/** Istio's Percent: `{ value: 12.5 }`, between 0 and 100. */
export const percent = z.object({
  value: z.number({ error: 'must be a number' }).min(0, { error: 'must be between 0 and 100' }).max(100, { error: 'must be between 0 and 100' }),
});

const stringMatchFields = z.object({
  exact: z.string().optional(),
  prefix: z.string().optional(),
  regex: z.string().optional(),
});

function checkStringMatch(emptyMeansPresence: boolean) {
  return (match: z.output<typeof stringMatchFields>, ctx: z.RefinementCtx): void => {
    const set = [match.exact, match.prefix, match.regex].filter((v) => v !== undefined).length;
    if (set > 1 || (set === 0 && !emptyMeansPresence)) {
      ctx.addIssue({
        code: 'custom',
        message: emptyMeansPresence
          ? 'must have at most one of exact, prefix or regex ({} matches on presence)'
          : 'must have exactly one of exact, prefix or regex',
      });
    }
    if (match.regex !== undefined) {
      // Envoy runs it on RE2: JavaScript's syntax (lookaround, backreferences) would be NACKed by every proxy.
      try {
        compileSafeRegex(match.regex, 'regex');
      } catch (error) {
        ctx.addIssue({ code: 'custom', path: ['regex'], message: `invalid regular expression: ${(error as Error).message}` });
      }
    }
  };
}

export const stringMatch = stringMatchFields.superRefine(checkStringMatch(false));

/** A header match: Istio takes an empty object as "the header is present" (under withoutHeaders, absent). */
export const headerMatch = stringMatchFields.superRefine(checkStringMatch(true));

export type StringMatch = z.output<typeof stringMatch>;

export const portSelector = z.object({ number: portNumber });

export const uint = (what = 'a whole number') =>
  z.number({ error: `must be ${what}` }).int({ error: 'must be a whole number' }).min(0, { error: 'must not be negative' });
