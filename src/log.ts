import { pino } from 'pino';
import type { Logger } from 'pino';

/** One JSON line per event on stdout; the token and other secrets are redacted wherever they appear. */
export function createLogger(level: string, destination: NodeJS.WritableStream = process.stdout): Logger {
  return pino(
    {
      name: 'meshbridge',
      level,
      base: { pid: process.pid },
      redact: { paths: ['token', '*.token', 'config.registries[*].token', 'headers["x-consul-token"]'], censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination as pino.DestinationStream,
  );
}
