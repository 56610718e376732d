import { pino } from 'pino';
import type { Logger } from 'pino';

/** How much of any one value a log line carries; clients choose node ids, NACK messages and resource names. */
export interface LogLimits {
  /** Longest string kept whole; longer ones are cut, with how much was cut. */
  readonly maxFieldChars: number;
  /** Longest list kept whole (a request may name millions of resources). */
  readonly maxListItems: number;
  /**
   * Warnings with the same message from the same logger (one xDS stream, one
   * registry) kept per minute; the rest are counted and summed up in one line.
   * 0 keeps them all.
   */
  readonly repeatedWarningsPerMinute: number;
}

export const DEFAULT_LOG_LIMITS: LogLimits = { maxFieldChars: 1024, maxListItems: 20, repeatedWarningsPerMinute: 20 };

const WARN = 40;
const WINDOW_MS = 60_000;
/** Distinct warning messages tracked per logger; past it the tally starts over rather than grow. */
const MAX_TRACKED_MESSAGES = 100;

interface WarningWindow {
  start: number;
  count: number;
  suppressed: number;
}

/**
 * One JSON line per event on stdout; the token and other secrets are redacted
 * wherever they appear, and every string and list is bounded (see LogLimits),
 * in fields, child bindings and messages alike: a 1 MB node id costs one
 * kilobyte per line, not a megabyte.
 */
export function createLogger(level: string, destination: NodeJS.WritableStream = process.stdout, limits: LogLimits = DEFAULT_LOG_LIMITS): Logger {
  const bound = (value: unknown) => boundForLog(value, limits);
  // Per logger instance (a child per stream), so one noisy client cannot silence the others.
  const windows = new WeakMap<object, Map<string, WarningWindow>>();
  /** False when this warning is one too many in its minute; says so once per minute, and how many were dropped. */
  const admitWarning = (logger: object, message: string, write: (fields: object, msg: string) => void): boolean => {
    const limit = limits.repeatedWarningsPerMinute;
    if (limit <= 0) return true;
    let perLogger = windows.get(logger);
    if (perLogger === undefined) windows.set(logger, (perLogger = new Map()));
    if (perLogger.size > MAX_TRACKED_MESSAGES) perLogger.clear();
    const now = Date.now();
    let window = perLogger.get(message);
    if (window === undefined || now - window.start >= WINDOW_MS) {
      if (window !== undefined && window.suppressed > 0) {
        write({ suppressed: window.suppressed }, `${message} (repeated ${window.suppressed} more times in a minute, not logged)`);
      }
      window = { start: now, count: 0, suppressed: 0 };
      perLogger.set(message, window);
    }
    if (++window.count <= limit) return true;
    if (++window.suppressed === 1) write({ limit }, `${message} (more than ${limit} times in a minute; the rest of the minute is counted, not logged)`);
    return false;
  };
  const logger = pino(
    {
      name: 'meshbridge',
      level,
      base: { pid: process.pid },
      redact: { paths: ['token', '*.token', 'config.registries[*].token', 'headers["x-consul-token"]'], censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { log: (object) => bound(object) as Record<string, unknown> },
      hooks: {
        logMethod(args, method, level) {
          const bounded = args.map((arg) => (typeof arg === 'string' ? (bound(arg) as string) : arg)) as Parameters<typeof method>;
          if (level === WARN) {
            const message = typeof bounded[0] === 'string' ? bounded[0] : typeof bounded[1] === 'string' ? bounded[1] : '';
            const write = (fields: object, msg: string) => method.apply(this, [fields, msg] as unknown as Parameters<typeof method>);
            if (!admitWarning(this, message, write)) return;
          }
          method.apply(this, bounded);
        },
      },
    },
    destination as pino.DestinationStream,
  );
  // pino applies no formatter to a child's bindings (a stream's node id is one), so they are bounded here;
  // children are made from their parent's prototype chain, so every descendant goes through this too.
  const child = logger.child as unknown as (this: Logger, bindings: pino.Bindings, options?: pino.ChildLoggerOptions) => Logger;
  logger.child = function (this: Logger, bindings: pino.Bindings, options?: pino.ChildLoggerOptions) {
    return child.call(this, bound(bindings) as pino.Bindings, options);
  } as unknown as Logger["child"];
  return logger;
}

/** `value` with long strings cut and long lists shortened, nested objects included (errors left to pino's serializer). */
export function boundForLog(value: unknown, limits: LogLimits, depth = 0): unknown {
  if (typeof value === 'string') {
    return value.length <= limits.maxFieldChars ? value : `${value.slice(0, limits.maxFieldChars)}…(+${value.length - limits.maxFieldChars} chars)`;
  }
  if (value === null || typeof value !== 'object' || value instanceof Error || value instanceof Date || depth > 4) return value;
  if (Array.isArray(value)) {
    const kept = value.slice(0, limits.maxListItems).map((item) => boundForLog(item, limits, depth + 1));
    if (value.length > limits.maxListItems) kept.push(`…(+${value.length - limits.maxListItems} more)`);
    return kept;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null) return value;
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) out[key] = boundForLog(item, limits, depth + 1);
  return out;
}
