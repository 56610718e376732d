import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { MeshbridgeError } from '../errors.js';

/** What `status` and `catalog` present to an admin API that needs it. */
export interface AdminCredentials {
  /** An operator token (`meshbridge token create --operator NAME`). */
  readonly token?: string;
  /** PEM CA bundle that signed the admin API's certificate, for https. */
  readonly ca?: Buffer;
}

/** The admin API's pages are small; a larger answer is not one. */
const MAX_ADMIN_RESPONSE_BYTES = 64 * 1024 * 1024;

interface AdminResponse {
  readonly status: number;
  readonly text: string;
}

function get(url: string, credentials: AdminCredentials, timeoutMs: number): Promise<AdminResponse> {
  const secure = url.startsWith('https:');
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = credentials.token === undefined ? {} : { authorization: `Bearer ${credentials.token}` };
    const request = (secure ? httpsRequest : httpRequest)(url, { headers, timeout: timeoutMs, ...(secure && credentials.ca ? { ca: credentials.ca } : {}) }, (response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ADMIN_RESPONSE_BYTES) request.destroy(new Error(`answer larger than ${MAX_ADMIN_RESPONSE_BYTES} bytes`));
        else chunks.push(chunk);
      });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    request.on('error', reject);
    request.end();
  });
}

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
export async function fetchAdmin<T>(admin: string, path: string, timeoutMs = 5_000, credentials: AdminCredentials = {}): Promise<T> {
  const url = `${adminBaseUrl(admin)}${path}`;
  let response: AdminResponse;
  try {
    response = await get(url, credentials, timeoutMs);
  } catch (error) {
    const e = error as { code?: string; message?: string };
    throw new AdminUnreachableError(
      `cannot reach the meshbridge admin API at ${adminBaseUrl(admin)}: ${e.code ?? e.message} (is the daemon running? pass --admin HOST:PORT)`,
      { cause: error },
    );
  }
  const { text } = response;
  if (response.status < 200 || response.status > 299) {
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
