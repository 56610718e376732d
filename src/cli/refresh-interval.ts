import { durationSeconds } from '../duration.js';
import { UsageError } from '../errors.js';

/**
 * A polling period given on the command line, in seconds: from 1 s (below it
 * a poller only spins on the disk or on meshbridge) to 24 h (beyond it a
 * change would wait longer than anyone plans for).
 */
export function parseRefreshInterval(flag: string, value: string): number {
  const seconds = durationSeconds(value, ['s', 'm', 'h']);
  if (!(seconds >= 1 && seconds <= 86_400)) throw new UsageError(`${flag} must be a duration from 1s to 24h such as 30s or 5m, got "${value}"`);
  return seconds;
}
