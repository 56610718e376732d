import { MeshbridgeError } from '../errors.js';

/** A registry answered with more bytes than `limits.registryResponseBytes` allows. */
export class ResponseTooLargeError extends MeshbridgeError {
  constructor(readonly limit: number, readonly declared: number | undefined) {
    super(
      'MB_REGISTRY_RESPONSE_TOO_LARGE',
      declared === undefined
        ? `response body over the ${limit}-byte limit (limits.registryResponseBytes); not read further`
        : `response body of ${declared} bytes, over the ${limit}-byte limit (limits.registryResponseBytes)`,
    );
  }
}

/**
 * Reads a response body as UTF-8 text, refusing it as soon as it passes
 * `maxBytes` (at once when Content-Length says so), so a registry cannot make
 * the daemon buffer more than the limit. The stream is released on refusal.
 */
export async function readCappedBody(
  body: AsyncIterable<Uint8Array> & { headers?: Record<string, string | string[] | undefined> },
  maxBytes: number,
  signal?: AbortSignal,
  declaredLength?: number,
): Promise<string> {
  const header = body.headers?.['content-length'];
  const declared = declaredLength ?? (typeof header === 'string' && /^\d+$/.test(header) ? Number(header) : undefined);
  if (declared !== undefined && declared > maxBytes) {
    (body as { destroy?: () => void }).destroy?.();
    void (body as { cancel?: () => Promise<void> }).cancel?.().catch(() => undefined);
    throw new ResponseTooLargeError(maxBytes, declared);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('aborted');
    total += chunk.byteLength;
    // Leaving the loop early releases the stream (destroys the socket, cancels the fetch body).
    if (total > maxBytes) throw new ResponseTooLargeError(maxBytes, undefined);
    chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  }
  return Buffer.concat(chunks, total).toString('utf8');
}

/** What a credential looks like when a server echoes a request header or a query parameter back. */
const CREDENTIAL = /\b(x-consul-token|authorization|proxy-authorization|token|password|secret)(["']?\s*[:=]\s*["']?)(basic\s+|bearer\s+)?[^\s"',;&]+/gi;

/**
 * Text copied out of a response (error bodies for logs and /debug/registryz)
 * with the credentials we sent, and anything shaped like one, blanked: a
 * registry that echoes headers must not leak the token to operators' tools.
 */
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length >= 4) out = out.split(secret).join('[redacted]');
  return out.replace(CREDENTIAL, (_match, name: string, separator: string, scheme: string | undefined) => `${name}${separator}${scheme ?? ''}[redacted]`);
}
