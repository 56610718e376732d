import { z } from 'zod';
import { hostname, ipAddress, labels, locality, portNumber, protocol, weight } from './fields.js';

export const workloadEntrySpec = z.object({
  address: ipAddress,
  ports: z.record(z.string(), portNumber, { error: 'must be a map of port names to port numbers' }).optional(),
  labels: labels.optional(),
  locality: locality.optional(),
  weight: weight.optional(),
  network: z.string().optional(),
  /** The workload's identity, `spiffe://<trust-domain>/ns/<this document's namespace>/sa/<serviceAccount>`. */
  serviceAccount: z
    .string({ error: 'must be a service account name' })
    .regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, {
      error: 'must be a service account name: lower-case letters, digits, dashes and dots, at most 253',
    })
    .optional(),
});

export type WorkloadEntrySpec = z.output<typeof workloadEntrySpec>;

const servicePort = z.object({
  number: portNumber,
  name: z.string({ error: 'must be a port name' }).min(1, { error: 'must not be empty' }),
  protocol: protocol.optional(),
  targetPort: portNumber.optional(),
});

export const serviceEntrySpec = z
  .object({
    hosts: z.array(hostname, { error: 'must be a list of hostnames' }).min(1, { error: 'must name at least one host' }),
    addresses: z.array(z.string()).optional(),
    ports: z.array(servicePort, { error: 'must be a list of ports' }).min(1, { error: 'must declare at least one port' }),
    location: z.enum(['MESH_EXTERNAL', 'MESH_INTERNAL'], { error: 'must be MESH_EXTERNAL or MESH_INTERNAL' }).optional(),
    resolution: z
      .enum(['STATIC', 'NONE', 'DNS', 'DNS_ROUND_ROBIN'], { error: 'must be STATIC, NONE, DNS or DNS_ROUND_ROBIN' })
      .optional(),
    endpoints: z.array(workloadEntrySpec, { error: 'must be a list of endpoints' }).optional(),
    workloadSelector: z.object({ labels: labels }).optional(),
    exportTo: z.array(z.string()).optional(),
    subjectAltNames: z.array(z.string()).optional(),
  })
  .superRefine((spec, ctx) => {
    if (spec.resolution !== undefined && spec.resolution !== 'STATIC') {
      ctx.addIssue({
        code: 'custom',
        path: ['resolution'],
        message: `resolution ${spec.resolution} is not supported; meshbridge serves STATIC endpoints`,
      });
    }
    if (spec.endpoints !== undefined && spec.workloadSelector !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['workloadSelector'],
        message: 'endpoints and workloadSelector are mutually exclusive',
      });
    }
    const numbers = new Set<number>();
    const names = new Set<string>();
    spec.ports.forEach((port, index) => {
      if (numbers.has(port.number)) {
        ctx.addIssue({ code: 'custom', path: ['ports', index, 'number'], message: `port ${port.number} is declared twice` });
      }
      if (names.has(port.name)) {
        ctx.addIssue({ code: 'custom', path: ['ports', index, 'name'], message: `port name "${port.name}" is declared twice` });
      }
      numbers.add(port.number);
      names.add(port.name);
    });
    spec.endpoints?.forEach((endpoint, index) => {
      for (const name of Object.keys(endpoint.ports ?? {})) {
        if (!names.has(name)) {
          ctx.addIssue({
            code: 'custom',
            path: ['endpoints', index, 'ports', name],
            message: `"${name}" is not a port name of this ServiceEntry (${[...names].join(', ')})`,
          });
        }
      }
    });
  });

export type ServiceEntrySpec = z.output<typeof serviceEntrySpec>;

/** Fields Istio honours that meshbridge does not: accepted, and reported as ignored. */
export const IGNORED_SERVICE_ENTRY_FIELDS = ['addresses', 'exportTo', 'subjectAltNames'] as const;
export const IGNORED_WORKLOAD_FIELDS = ['network'] as const;
