import { z } from 'zod';
import { labels, portNumber } from './fields.js';

/** Istio's mutual TLS modes; UNSET inherits from the level above (namespace, then mesh). */
export const MTLS_MODES = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'] as const;

const mtls = z.object(
  {
    mode: z.enum(MTLS_MODES, { error: `must be one of ${MTLS_MODES.join(', ')}` }).optional(),
  },
  { error: 'must be {mode: STRICT | PERMISSIVE | DISABLE | UNSET}' },
);


/**
 * security.istio.io PeerAuthentication: what an inbound listener accepts.
 * portLevelMtls keys are the ports the workload's sidecar listens on (the
 * endpoint's port); Istio allows them only beside a selector, since a port
 * number means nothing across a whole namespace.
 */
export const peerAuthenticationSpec = z
  .object({
    selector: z.object({ matchLabels: labels.optional() }, { error: 'must be {matchLabels: {...}}' }).optional(),
    mtls: mtls.optional(),
    portLevelMtls: z.record(z.string(), mtls, { error: 'must be a map of port numbers to {mode: ...}' }).optional(),
  })
  .superRefine((spec, ctx) => {
    const selects = spec.selector?.matchLabels !== undefined && Object.keys(spec.selector.matchLabels).length > 0;
    if (spec.portLevelMtls !== undefined && !selects) {
      ctx.addIssue({ code: 'custom', path: ['portLevelMtls'], message: 'portLevelMtls needs a selector with matchLabels (as in Istio): a port means nothing across a namespace' });
    }
    // A port key is a YAML map key, so it arrives as a string: "8080".
    for (const key of Object.keys(spec.portLevelMtls ?? {})) {
      if (!/^\d{1,5}$/.test(key) || !portNumber.safeParse(Number(key)).success) {
        ctx.addIssue({ code: 'custom', path: ['portLevelMtls', key], message: `"${key.slice(0, 40)}" is not a port number (1 to 65535)` });
      }
    }
    if (spec.portLevelMtls !== undefined && Object.keys(spec.portLevelMtls).length > 1_000) {
      ctx.addIssue({ code: 'custom', path: ['portLevelMtls'], message: 'at most 1000 ports' });
    }
  });

export type PeerAuthenticationSpec = z.output<typeof peerAuthenticationSpec>;
