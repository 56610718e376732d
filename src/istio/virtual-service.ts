import { z } from 'zod';
import { portNumber } from './fields.js';
import { duration, headerMatch, percent, portSelector, stringMatch, uint } from './traffic-fields.js';

const destination = z.object({
  host: z.string({ error: 'must be a hostname' }).min(1, { error: 'must not be empty' }).transform((h) => h.toLowerCase()),
  subset: z.string().min(1).optional(),
  port: portSelector.optional(),
});

export type Destination = z.output<typeof destination>;

const headerOperations = z.object({
  set: z.record(z.string(), z.string()).optional(),
  add: z.record(z.string(), z.string()).optional(),
  remove: z.array(z.string()).optional(),
});

const headers = z.object({ request: headerOperations.optional(), response: headerOperations.optional() });

export type HeaderOperations = z.output<typeof headerOperations>;
export type Headers = z.output<typeof headers>;

const matchRequest = z.object({
  name: z.string().optional(),
  uri: stringMatch.optional(),
  scheme: stringMatch.optional(),
  method: stringMatch.optional(),
  authority: stringMatch.optional(),
  headers: z.record(z.string(), headerMatch).optional(),
  port: portNumber.optional(),
  queryParams: z.record(z.string(), stringMatch).optional(),
  ignoreUriCase: z.boolean().optional(),
  withoutHeaders: z.record(z.string(), headerMatch).optional(),
  sourceLabels: z.record(z.string(), z.string()).optional(),
  gateways: z.array(z.string()).optional(),
  sourceNamespace: z.string().optional(),
  statPrefix: z.string().optional(),
});

export type MatchRequest = z.output<typeof matchRequest>;

const GRPC_STATUS = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE',
  'DATA_LOSS', 'UNAUTHENTICATED',
] as const;

export const GRPC_STATUS_CODES: Readonly<Record<string, number>> = Object.fromEntries(GRPC_STATUS.map((name, code) => [name, code]));

const fault = z
  .object({
    delay: z
      .object({ fixedDelay: duration, percentage: percent.optional(), percent: z.unknown().optional() })
      .optional(),
    abort: z
      .object({
        httpStatus: z.number().int().min(200, { error: 'must be an HTTP status between 200 and 599' }).max(599, { error: 'must be an HTTP status between 200 and 599' }).optional(),
        grpcStatus: z.enum(GRPC_STATUS, { error: `must be a gRPC status name (${GRPC_STATUS.join(', ')})` }).optional(),
        percentage: percent.optional(),
      })
      .refine((a) => (a.httpStatus === undefined) !== (a.grpcStatus === undefined), { error: 'must have exactly one of httpStatus or grpcStatus' })
      .optional(),
  })
  .refine((f) => f.delay !== undefined || f.abort !== undefined, { error: 'must have delay or abort' });

const REDIRECT_CODES = [301, 302, 303, 307, 308] as const;

/**
 * The retry_on conditions Envoy's router knows (HTTP and gRPC). Envoy ignores
 * any other token with only a log line, so an unknown one is refused here.
 */
export const RETRY_CONDITIONS: readonly string[] = [
  '5xx', 'gateway-error', 'reset', 'reset-before-request', 'connect-failure', 'envoy-ratelimited', 'retriable-4xx',
  'refused-stream', 'retriable-status-codes', 'retriable-headers', 'http3-post-connect-failure',
  'cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable',
];

/** What Istio retries when a VirtualService sets attempts without retryOn: these conditions, plus status 503. */
export const DEFAULT_RETRY_ON: readonly string[] = ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'];
export const DEFAULT_RETRIABLE_STATUS_CODES: readonly number[] = [503];

/**
 * Istio's retryOn: comma-separated conditions, where a number is an HTTP status
 * to retry on (and implies `retriable-status-codes`, as in Istio).
 */
export function splitRetryOn(retryOn: string): { conditions: string[]; statusCodes: number[]; unknown: string[] } {
  const conditions: string[] = [];
  const statusCodes: number[] = [];
  const unknown: string[] = [];
  for (const token of retryOn.split(',').map((t) => t.trim()).filter((t) => t !== '')) {
    if (/^\d+$/.test(token) && Number(token) >= 100 && Number(token) <= 599) {
      if (!statusCodes.includes(Number(token))) statusCodes.push(Number(token));
    } else if (RETRY_CONDITIONS.includes(token)) {
      if (!conditions.includes(token)) conditions.push(token);
    } else {
      unknown.push(token);
    }
  }
  if (statusCodes.length > 0 && !conditions.includes('retriable-status-codes')) conditions.push('retriable-status-codes');
  return { conditions, statusCodes, unknown };
}

const httpRoute = z
  .object({
    name: z.string().optional(),
    match: z.array(matchRequest, { error: 'must be a list of match conditions' }).optional(),
    route: z
      .array(z.object({ destination, weight: uint('a weight').max(100, { error: 'must be at most 100' }).optional(), headers: headers.optional() }))
      .optional(),
    redirect: z
      .object({
        uri: z.string().optional(),
        authority: z.string().optional(),
        port: portNumber.optional(),
        scheme: z.string().optional(),
        redirectCode: z
          .number()
          .refine((c) => (REDIRECT_CODES as readonly number[]).includes(c), { error: `must be one of ${REDIRECT_CODES.join(', ')}` })
          .optional(),
      })
      .optional(),
    rewrite: z.object({ uri: z.string().optional(), authority: z.string().optional(), uriRegexRewrite: z.unknown().optional() }).optional(),
    timeout: duration.optional(),
    retries: z
      .object({
        attempts: uint(),
        perTryTimeout: duration.optional(),
        retryOn: z
          .string({ error: 'must be a comma-separated list of retry conditions' })
          .superRefine((value, ctx) => {
            const { conditions, statusCodes, unknown } = splitRetryOn(value);
            if (unknown.length > 0) {
              ctx.addIssue({
                code: 'custom',
                message: `unknown retry condition${unknown.length > 1 ? 's' : ''} ${unknown.map((t) => `"${t}"`).join(', ')} (an HTTP status code, or one of ${RETRY_CONDITIONS.join(', ')})`,
              });
            } else if (conditions.length === 0 && statusCodes.length === 0) {
              ctx.addIssue({ code: 'custom', message: 'must name at least one retry condition' });
            }
          })
          .optional(),
        retryRemoteLocalities: z.boolean().optional(),
      })
      .optional(),
    fault: fault.optional(),
    mirror: destination.optional(),
    mirrorPercentage: percent.optional(),
    mirrors: z.unknown().optional(),
    headers: headers.optional(),
    corsPolicy: z.unknown().optional(),
    delegate: z.unknown().optional(),
    directResponse: z
      .object({
        status: z.number({ error: 'must be an HTTP status' }).int().min(200, { error: 'must be an HTTP status between 200 and 599' }).max(599, { error: 'must be an HTTP status between 200 and 599' }),
        body: z.object({ string: z.string().optional(), bytes: z.string().optional() }).optional(),
      })
      .optional(),
  })
  .superRefine((route, ctx) => {
    const actions = [route.route, route.redirect, route.directResponse, route.delegate].filter((a) => a !== undefined).length;
    if (actions !== 1) ctx.addIssue({ code: 'custom', message: 'must have exactly one of route, redirect or directResponse' });
    if (route.redirect !== undefined && route.rewrite !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['rewrite'], message: 'rewrite cannot be combined with redirect' });
    }
    if (route.route !== undefined) {
      if (route.route.length === 0) ctx.addIssue({ code: 'custom', path: ['route'], message: 'must list at least one destination' });
      if (route.route.length > 1) {
        const total = route.route.reduce((sum, d) => sum + (d.weight ?? 0), 0);
        if (total !== 100) ctx.addIssue({ code: 'custom', path: ['route'], message: `destination weights add up to ${total}, not 100` });
      }
    }
  });

export type HttpRoute = z.output<typeof httpRoute>;

export const virtualServiceSpec = z.object({
  hosts: z
    .array(z.string().min(1).transform((h) => h.toLowerCase()), { error: 'must be a list of hostnames' })
    .min(1, { error: 'must name at least one host' }),
  gateways: z.array(z.string()).optional(),
  http: z.array(httpRoute, { error: 'must be a list of HTTP routes' }).optional(),
  tcp: z.array(z.unknown()).optional(),
  tls: z.array(z.unknown()).optional(),
  exportTo: z.array(z.string()).optional(),
});

export type VirtualServiceSpec = z.output<typeof virtualServiceSpec>;
