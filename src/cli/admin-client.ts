import { MeshbridgeError } from '../errors.js';

export class AdminUnreachableError extends MeshbridgeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MB_ADMIN_UNREACHABLE', message, options);
  }
}

/** `host:port` (or a full URL) into the admin API's base URL. */
export function adminBaseUrl(admin: string): string {
  if (/^https?:\/\//.test(admin)) return admin.replace(/\/$/, '');
  return `http://${admin}`;
}

/** GETs a JSON page of a running daemon's admin API. */
export async function fetchAdmin<T>(admin: string, path: string, timeoutMs = 5_000): Promise<T> {
  const url = `${adminBaseUrl(admin)}${path}`;
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    throw new AdminUnreachableError(
      `cannot reach the meshbridge admin API at ${adminBaseUrl(admin)}: ${cause?.code ?? cause?.message ?? (error as Error).message} (is the daemon running? pass --admin HOST:PORT)`,
      { cause: error },
    );
  }
  const text = await response.text();
  if (!response.ok) {
    let message = text.trim();
    try {
      message = (JSON.parse(text) as { error?: string }).error ?? message;
    } catch {
      // plain text
    }
    throw new AdminUnreachableError(`${url}: HTTP ${response.status}: ${message}`);
  }
  return JSON.parse(text) as T;
}

/** Left-aligned columns, two spaces apart, as kubectl and istioctl print them. */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join('');
}

/** "42s", "3m", "5h", "2d": how long ago, for a table. */
export function age(since: string, now = Date.now()): string {
  const seconds = Math.max(0, Math.round((now - Date.parse(since)) / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86_400)}d`;
}
