import { z } from 'zod';
import { labels } from './fields.js';
import { duration, portSelector, uint } from './traffic-fields.js';

const SIMPLE_LB = ['ROUND_ROBIN', 'LEAST_REQUEST', 'LEAST_CONN', 'RANDOM', 'UNSPECIFIED'] as const;

const consistentHash = z
  .object({
    httpHeaderName: z.string().min(1).optional(),
    httpCookie: z.object({ name: z.string().min(1), path: z.string().optional(), ttl: duration.optional() }).optional(),
    useSourceIp: z.boolean().optional(),
    httpQueryParameterName: z.string().min(1).optional(),
    ringHash: z.object({ minimumRingSize: uint().optional() }).optional(),
    minimumRingSize: uint().optional(),
  })
  .superRefine((hash, ctx) => {
    const keys = [hash.httpHeaderName, hash.httpCookie, hash.useSourceIp, hash.httpQueryParameterName].filter((v) => v !== undefined);
    if (keys.length !== 1) {
      ctx.addIssue({ code: 'custom', message: 'must have exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName' });
    }
  });

const localityPattern = z
  .string({ error: 'must be a locality "region/zone/subzone", with * allowed' })
  .refine((v) => v.split('/').length <= 3 && v.length > 0, { error: 'must be "region", "region/zone" or "region/zone/subzone"' });

const localityLbSetting = z
  .object({
    enabled: z.boolean().optional(),
    distribute: z
      .array(
        z.object({
          from: localityPattern,
          to: z.record(z.string(), uint('a weight')).refine((to) => Object.values(to).reduce((a, b) => a + b, 0) === 100, {
            error: 'weights must add up to 100',
          }),
        }),
      )
      .optional(),
    failover: z.array(z.object({ from: z.string().min(1), to: z.string().min(1) })).optional(),
    failoverPriority: z.array(z.string()).optional(),
  })
  .refine((l) => !(l.distribute !== undefined && l.failover !== undefined), { error: 'distribute and failover are mutually exclusive' });

const loadBalancer = z
  .object({
    simple: z.enum([...SIMPLE_LB, 'PASSTHROUGH'], { error: `must be one of ${SIMPLE_LB.join(', ')}` }).optional(),
    consistentHash: consistentHash.optional(),
    localityLbSetting: localityLbSetting.optional(),
    warmupDurationSecs: z.unknown().optional(),
  })
  .superRefine((lb, ctx) => {
    if (lb.simple !== undefined && lb.consistentHash !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'simple and consistentHash are mutually exclusive' });
    }
    if (lb.simple === 'PASSTHROUGH') {
      ctx.addIssue({ code: 'custom', path: ['simple'], message: 'PASSTHROUGH needs original-destination capture, which VMs without iptables do not have' });
    }
  });

const connectionPool = z.object({
  tcp: z
    .object({
      maxConnections: uint().optional(),
      connectTimeout: duration.optional(),
      tcpKeepalive: z.unknown().optional(),
      maxConnectionDuration: duration.optional(),
    })
    .optional(),
  http: z
    .object({
      http1MaxPendingRequests: uint().optional(),
      http2MaxRequests: uint().optional(),
      maxRequestsPerConnection: uint().optional(),
      maxRetries: uint().optional(),
      idleTimeout: duration.optional(),
      h2UpgradePolicy: z.enum(['DEFAULT', 'DO_NOT_UPGRADE', 'UPGRADE']).optional(),
      useClientProtocol: z.boolean().optional(),
      maxConcurrentStreams: uint().optional(),
    })
    .optional(),
});

const outlierDetection = z.object({
  consecutiveErrors: uint().optional(),
  consecutive5xxErrors: uint().optional(),
  consecutiveGatewayErrors: uint().optional(),
  consecutiveLocalOriginFailures: uint().optional(),
  splitExternalLocalOriginErrors: z.boolean().optional(),
  interval: duration.optional(),
  baseEjectionTime: duration.optional(),
  maxEjectionPercent: uint().max(100, { error: 'must be at most 100' }).optional(),
  minHealthPercent: uint().max(100, { error: 'must be at most 100' }).optional(),
});

const tls = z
  .object({
    mode: z.enum(['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL'], { error: 'must be DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL' }),
    clientCertificate: z.string().optional(),
    privateKey: z.string().optional(),
    caCertificates: z.string().optional(),
    credentialName: z.string().optional(),
    subjectAltNames: z.array(z.string()).optional(),
    sni: z.string().optional(),
    insecureSkipVerify: z.boolean().optional(),
  })
  .superRefine((t, ctx) => {
    if (t.mode === 'MUTUAL' && (t.clientCertificate === undefined || t.privateKey === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'MUTUAL needs clientCertificate and privateKey' });
    }
    if (t.mode === 'ISTIO_MUTUAL') {
      // The certificate is the workload's own, from meshbridge agent over SDS: files here would be ignored, so they are refused.
      for (const field of ['clientCertificate', 'privateKey', 'caCertificates'] as const) {
        if (t[field] !== undefined) ctx.addIssue({ code: 'custom', path: [field], message: 'ISTIO_MUTUAL uses the workload certificate from meshbridge agent; leave this out' });
      }
    }
    if (t.credentialName !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['credentialName'], message: 'credentialName reads Kubernetes secrets; use certificate file paths' });
    }
  });

const policyFields = {
  loadBalancer: loadBalancer.optional(),
  connectionPool: connectionPool.optional(),
  outlierDetection: outlierDetection.optional(),
  tls: tls.optional(),
};

const portTrafficPolicy = z.object({ port: portSelector, ...policyFields });

export const trafficPolicy = z
  .object({
    ...policyFields,
    portLevelSettings: z.array(portTrafficPolicy).optional(),
    tunnel: z.unknown().optional(),
    proxyProtocol: z.unknown().optional(),
  })
  .superRefine((policy, ctx) => {
    const seen = new Set<number>();
    policy.portLevelSettings?.forEach((p, i) => {
      if (seen.has(p.port.number)) ctx.addIssue({ code: 'custom', path: ['portLevelSettings', i, 'port', 'number'], message: `port ${p.port.number} has two settings` });
      seen.add(p.port.number);
    });
  });

export type TrafficPolicy = z.output<typeof trafficPolicy>;
export type PortTrafficPolicy = z.output<typeof portTrafficPolicy>;

export const destinationRuleSpec = z
  .object({
    host: z.string({ error: 'must be a hostname' }).min(1, { error: 'must not be empty' }).transform((h) => h.toLowerCase()),
    trafficPolicy: trafficPolicy.optional(),
    subsets: z
      .array(
        z.object({
          name: z
            .string({ error: 'must be a name' })
            .regex(/^[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$/, { error: 'must be letters, digits, "-", "_" or "."' }),
          labels: labels.optional(),
          trafficPolicy: trafficPolicy.optional(),
        }),
      )
      .optional(),
    exportTo: z.array(z.string()).optional(),
    workloadSelector: z.unknown().optional(),
  })
  .superRefine((rule, ctx) => {
    const names = new Set<string>();
    rule.subsets?.forEach((s, i) => {
      if (names.has(s.name)) ctx.addIssue({ code: 'custom', path: ['subsets', i, 'name'], message: `subset "${s.name}" is declared twice` });
      names.add(s.name);
    });
  });

export type DestinationRuleSpec = z.output<typeof destinationRuleSpec>;

/** Accepted so documents written for Istio load, but without effect here: each use is reported. */
export const IGNORED_DESTINATION_RULE_FIELDS = [
  'exportTo',
  'workloadSelector',
  'trafficPolicy.tunnel',
  'trafficPolicy.proxyProtocol',
  'trafficPolicy.loadBalancer.warmupDurationSecs',
  'trafficPolicy.connectionPool.tcp.tcpKeepalive',
  'trafficPolicy.connectionPool.tcp.maxConnectionDuration',
  'trafficPolicy.connectionPool.http.h2UpgradePolicy',
  'trafficPolicy.connectionPool.http.useClientProtocol',
  'trafficPolicy.connectionPool.http.maxConcurrentStreams',
  'trafficPolicy.outlierDetection.consecutiveLocalOriginFailures',
  'trafficPolicy.outlierDetection.splitExternalLocalOriginErrors',
  'trafficPolicy.loadBalancer.localityLbSetting.failoverPriority',
] as const;
