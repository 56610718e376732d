import { z } from 'zod';
import { labels } from './fields.js';

/** How many hosts one egress entry may list: a scope is matched against every service on each rebuild. */
export const MAX_EGRESS_HOSTS = 1_000;

const DNS_PATTERN = /^(\*|(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$/;

/**
 * One `namespace/dnsName` of an egress listener, as Istio writes it: the
 * namespace is `*`, `.` (the Sidecar's own), `~` (none) or a name; the DNS
 * name is `*`, `*.suffix` or a full hostname, compared lower-cased.
 */
export const egressHost = z
  .string({ error: 'must be a string "namespace/host"' })
  .transform((value) => value.toLowerCase())
  .superRefine((value, ctx) => {
    const slash = value.indexOf('/');
    if (slash <= 0 || slash !== value.lastIndexOf('/')) {
      ctx.addIssue({ code: 'custom', message: `"${value}" is not "namespace/host" (for every namespace write "*/${value}")` });
      return;
    }
    const host = value.slice(slash + 1);
    if (host.length > 253 || !DNS_PATTERN.test(host)) {
      ctx.addIssue({ code: 'custom', message: `"${host}" is not a hostname, "*" or "*.suffix"` });
    }
  });

const egressListener = z.object({
  hosts: z
    .array(egressHost, { error: 'must be a list of "namespace/host"' })
    .min(1, { error: 'must name at least one host' })
    .max(MAX_EGRESS_HOSTS, { error: `at most ${MAX_EGRESS_HOSTS} hosts` }),
  port: z.unknown().optional(),
  bind: z.string().optional(),
  captureMode: z.string().optional(),
});

export const sidecarSpec = z.object({
  workloadSelector: z.object({ labels: labels }, { error: 'must be {labels: {...}}' }).optional(),
  egress: z.array(egressListener, { error: 'must be a list of egress listeners' }).max(64, { error: 'at most 64 egress listeners' }).optional(),
  ingress: z.array(z.unknown()).optional(),
  outboundTrafficPolicy: z.unknown().optional(),
  inboundConnectionPool: z.unknown().optional(),
});

export type SidecarSpec = z.output<typeof sidecarSpec>;

/** Fields Istio honours that meshbridge accepts and reports as having no effect. */
export const IGNORED_SIDECAR_FIELDS = ['egress[].port', 'egress[].bind', 'egress[].captureMode', 'ingress', 'outboundTrafficPolicy', 'inboundConnectionPool'];
