const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86_400 } as const;
type Unit = keyof typeof UNIT_SECONDS;

/**
 * Seconds in a command-line duration (`90s`, `30m`, `24h`, `7d`) with one of
 * `units`, or a bare number of seconds when `bareSeconds`; NaN for anything
 * else. Callers bound the result and word the error for their flag.
 */
export function durationSeconds(value: string, units: readonly Unit[], bareSeconds = false): number {
  const match = /^(\d+)([a-z]?)$/.exec(value.trim());
  if (match === null) return NaN;
  const unit = match[2]!;
  if (unit === '') return bareSeconds ? Number(match[1]) : NaN;
  return (units as readonly string[]).includes(unit) ? Number(match[1]) * UNIT_SECONDS[unit as Unit] : NaN;
}
