import { isIP } from 'node:net';
import { z } from 'zod';
import { PROTOCOLS } from '../model/service.js';
import type { Protocol } from '../model/service.js';

/** Field schemas shared by the Istio kinds, with messages that say what is expected. */

export const portNumber = z
  .number({ error: 'must be a port number' })
  .int({ error: 'must be a whole number' })
  .min(1, { error: 'must be between 1 and 65535' })
  .max(65535, { error: 'must be between 1 and 65535' });

export const ipAddress = z
  .string({ error: 'must be an IP address' })
  .refine((value) => isIP(value) !== 0, {
    error: (issue) => `"${String(issue.input)}" is not an IP address (EDS accepts only IPs, not DNS names)`,
  });

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** A fully qualified service hostname, compared case-insensitively, so it is lower-cased. */
export const hostname = z
  .string({ error: 'must be a hostname' })
  .transform((value) => value.toLowerCase())
  .refine((value) => value.length <= 253 && value.split('.').every((label) => DNS_LABEL.test(label)), {
    error: (issue) => `"${String(issue.input)}" is not a valid hostname (wildcards are not supported)`,
  });

export const labels = z.record(z.string(), z.string({ error: 'label values must be strings' }), {
  error: 'must be a map of label names to string values',
});

export const locality = z
  .string({ error: 'must be a string "region/zone/subzone"' })
  .refine((value) => value.split('/').length <= 3, { error: 'must be "region", "region/zone" or "region/zone/subzone"' });

export const weight = z
  .number({ error: 'must be a number' })
  .int({ error: 'must be a whole number' })
  .min(1, { error: 'must be at least 1' })
  .max(4294967295, { error: 'must fit in 32 bits' });

const ISTIO_TCP_PROTOCOLS = new Set(['MONGO', 'MYSQL', 'REDIS', 'UDP']);

/**
 * Istio's port protocols, case-insensitive. Protocols Istio treats as opaque TCP
 * map to TCP; anything else is an error rather than a silent guess.
 */
export const protocol = z
  .string({ error: 'must be a protocol name' })
  .transform((value, ctx): Protocol => {
    const upper = value.toUpperCase();
    if ((PROTOCOLS as readonly string[]).includes(upper)) return upper as Protocol;
    if (upper === 'GRPC-WEB') return 'HTTP';
    if (ISTIO_TCP_PROTOCOLS.has(upper)) return 'TCP';
    ctx.addIssue({ code: 'custom', message: `unknown protocol "${value}" (one of ${PROTOCOLS.join(', ')})` });
    return z.NEVER;
  });

/** Istio's protocol selection by port name prefix (`http-web`, `grpc`), else TCP. */
export function protocolFromPortName(name: string): Protocol {
  const lower = name.toLowerCase();
  // gRPC-Web is HTTP/1.1 or HTTP/2 framing a browser can send, not gRPC: splitting on "-" alone would read it as GRPC.
  if (lower === 'grpc-web' || lower.startsWith('grpc-web-')) return 'HTTP';
  const prefix = lower.split('-')[0]!.toUpperCase();
  if ((PROTOCOLS as readonly string[]).includes(prefix)) return prefix as Protocol;
  return 'TCP';
}

export const metadata = z
  .object({
    name: z.string({ error: 'must be a string' }).optional(),
    namespace: z.string({ error: 'must be a string' }).optional(),
    labels: labels.optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  })
  .optional();

export function parseLocality(value: string | undefined): { region: string; zone: string; subzone: string } {
  const [region = '', zone = '', subzone = ''] = (value ?? '').split('/');
  return { region, zone, subzone };
}
