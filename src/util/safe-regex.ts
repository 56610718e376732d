import { RE2JS } from 're2js';
import { MeshbridgeError } from '../errors.js';

/**
 * Longest pattern accepted from outside. RE2 runs in time linear in pattern
 * and input, so bounding the pattern bounds the work a request can ask for.
 */
export const MAX_REGEX_LENGTH = 4096;

/** A regular expression from outside, with Envoy's `safe_regex` (RE2) semantics. */
export interface SafeRegex {
  /** True when the whole of `value` matches, as Envoy's RegexMatcher does. */
  matchesWhole(value: string): boolean;
}

export class RegexError extends MeshbridgeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MB_REGEX_INVALID', message, options);
  }
}

/**
 * Compiles with re2js (a port of RE2): matching never backtracks, so a
 * pattern such as `(a|a)*b` costs time linear in the input, never exponential,
 * and the syntax RE2 refuses (lookaround, backreferences) is refused here too,
 * as Envoy would refuse it.
 */
export function compileSafeRegex(pattern: string, what: string): SafeRegex {
  if (pattern.length > MAX_REGEX_LENGTH) {
    throw new RegexError(`${what}: regular expression of ${pattern.length} characters; at most ${MAX_REGEX_LENGTH} are accepted`);
  }
  let compiled: ReturnType<typeof RE2JS.compile>;
  try {
    compiled = RE2JS.compile(pattern);
  } catch (error) {
    throw new RegexError(`${what}: not an RE2 regular expression: ${(error as Error).message}`, { cause: error });
  }
  return { matchesWhole: (value) => compiled.matcher(value).matches() };
}
