import { z } from 'zod';
import { labels } from './fields.js';

/**
 * Bounds on one AuthorizationPolicy. Every value becomes a matcher Envoy runs
 * on each request of the selected workloads, so a policy's size is the cost of
 * every request it guards; these keep one document from making that unbounded.
 */
export const MAX_AUTHZ_RULES = 128;
/** Entries of one rule's `from`, `to` or `when`. */
export const MAX_AUTHZ_CLAUSES = 64;
/** Values of one list (`principals`, `paths`, a condition's `values`...). */
export const MAX_AUTHZ_VALUES = 256;
/** Characters of one value. */
export const MAX_AUTHZ_VALUE_LENGTH = 1024;
/** Values of the whole policy: the lists above multiply, and one document must not become millions of matchers. */
export const MAX_AUTHZ_POLICY_VALUES = 4096;

/**
 * One of Istio's string patterns: exact, `prefix*`, `*suffix`, or `*` alone
 * (present and not empty). A `*` anywhere else has no meaning in Istio's
 * matching, so it is refused rather than compared as a literal character.
 */
export const authzPattern = z
  .string({ error: 'must be a string' })
  .min(1, { error: 'must not be empty' })
  .max(MAX_AUTHZ_VALUE_LENGTH, { error: `must be at most ${MAX_AUTHZ_VALUE_LENGTH} characters` })
  .superRefine((value, ctx) => {
    if (value === '*') return;
    const inner = value.slice(1, -1);
    const stars = (value.match(/\*/g) ?? []).length;
    if (inner.includes('*') || stars > 1) {
      ctx.addIssue({ code: 'custom', message: `"${value}": "*" is allowed only alone, as the first or as the last character` });
    }
  });

const patterns = z
  .array(authzPattern, { error: 'must be a list of strings' })
  .min(1, { error: 'must not be empty (leave the field out to match anything)' })
  .max(MAX_AUTHZ_VALUES, { error: `at most ${MAX_AUTHZ_VALUES} values` });

/** Istio writes ports as strings ("8080"); numbers are accepted too. */
export const authzPort = z
  .union([z.string(), z.number()], { error: 'must be a port number' })
  .transform((value, ctx) => {
    const text = String(value);
    const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
    if (!(port >= 1 && port <= 65535)) {
      ctx.addIssue({ code: 'custom', message: `"${text}" is not a port number between 1 and 65535` });
      return z.NEVER;
    }
    return port;
  });

const ports = z
  .array(authzPort, { error: 'must be a list of port numbers' })
  .min(1, { error: 'must not be empty (leave the field out to match any port)' })
  .max(MAX_AUTHZ_VALUES, { error: `at most ${MAX_AUTHZ_VALUES} ports` });

/**
 * An object of an AuthorizationPolicy. Unknown fields are errors here, not
 * the warnings other kinds give: a misspelt `notPaths` would silently allow
 * what it was written to keep out, so the file is rejected instead.
 */
function strictObject<Shape extends z.core.$ZodLooseShape>(shape: Shape, what: string) {
  return z.strictObject(shape, {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown field ${(issue as { keys: string[] }).keys.map((k) => `"${k.slice(0, 100)}"`).join(', ')} (an access policy is not applied with fields it does not understand)`
        : `must be ${what}`,
  });
}

/** Istio fields meshbridge cannot enforce: accepted so Istio's documents load, applied fail-closed and reported. */
const unenforced = z.array(z.string()).max(MAX_AUTHZ_VALUES, { error: `at most ${MAX_AUTHZ_VALUES} values` }).optional();

export const UNENFORCED_SOURCE_FIELDS = [
  'requestPrincipals',
  'notRequestPrincipals',
  'ipBlocks',
  'notIpBlocks',
  'remoteIpBlocks',
  'notRemoteIpBlocks',
  'serviceAccounts',
  'notServiceAccounts',
] as const;

const source = strictObject(
  {
    principals: patterns.optional(),
    notPrincipals: patterns.optional(),
    namespaces: patterns.optional(),
    notNamespaces: patterns.optional(),
    requestPrincipals: unenforced,
    notRequestPrincipals: unenforced,
    ipBlocks: unenforced,
    notIpBlocks: unenforced,
    remoteIpBlocks: unenforced,
    notRemoteIpBlocks: unenforced,
    serviceAccounts: unenforced,
    notServiceAccounts: unenforced,
  },
  'a source {principals, namespaces, ...}',
).refine((s) => Object.values(s).some((v) => v !== undefined), { error: 'must set at least one field (leave `from` out to match any source)' });

const operation = strictObject(
  {
    hosts: patterns.optional(),
    notHosts: patterns.optional(),
    ports: ports.optional(),
    notPorts: ports.optional(),
    methods: patterns.optional(),
    notMethods: patterns.optional(),
    paths: patterns.optional(),
    notPaths: patterns.optional(),
  },
  'an operation {hosts, ports, methods, paths, ...}',
).refine((o) => Object.values(o).some((v) => v !== undefined), { error: 'must set at least one field (leave `to` out to match any request)' });

/** `when` keys meshbridge enforces. */
export const ENFORCED_CONDITION_KEYS = ['request.headers[<name>]', 'source.principal', 'source.namespace', 'destination.port'] as const;

/** Istio keys meshbridge knows and cannot enforce (no JWT authentication, no original source address on a VM). */
const UNENFORCED_CONDITION_KEY = /^(source\.ip|remote\.ip|destination\.ip|connection\.sni|request\.auth\.(principal|audiences|presenter|claims\[.+\])|experimental\.envoy\.filters\..+)$/;

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9a-zA-Z]{1,256}$/;

/** What a `when` key names: a header, one of the enforced attributes, or an Istio attribute that cannot be enforced here. */
export type ConditionKey =
  | { readonly kind: 'header'; readonly header: string }
  | { readonly kind: 'source.principal' | 'source.namespace' | 'destination.port' }
  | { readonly kind: 'unenforced'; readonly key: string };

export function parseConditionKey(key: string): ConditionKey | { readonly error: string } {
  const header = /^request\.headers\[(.*)\]$/.exec(key);
  if (header !== null) {
    const name = header[1]!;
    if (!HEADER_NAME.test(name)) return { error: `"${name}" is not an HTTP header name` };
    return { kind: 'header', header: name.toLowerCase() };
  }
  if (key === 'source.principal' || key === 'source.namespace' || key === 'destination.port') return { kind: key };
  if (UNENFORCED_CONDITION_KEY.test(key)) return { kind: 'unenforced', key };
  return { error: `unknown key "${key.slice(0, 100)}" (one of ${ENFORCED_CONDITION_KEYS.join(', ')})` };
}

const condition = strictObject(
  {
    key: z.string({ error: 'must be a string' }).max(MAX_AUTHZ_VALUE_LENGTH, { error: `must be at most ${MAX_AUTHZ_VALUE_LENGTH} characters` }),
    values: patterns.optional(),
    notValues: patterns.optional(),
  },
  'a condition {key, values, notValues}',
).superRefine((c, ctx) => {
    if (c.values === undefined && c.notValues === undefined) {
      ctx.addIssue({ code: 'custom', message: 'must have values or notValues' });
    }
    const key = parseConditionKey(c.key);
    if ('error' in key) {
      ctx.addIssue({ code: 'custom', path: ['key'], message: key.error });
      return;
    }
    if (key.kind === 'destination.port') {
      for (const field of ['values', 'notValues'] as const) {
        c[field]?.forEach((value, index) => {
          if (!authzPort.safeParse(value).success) ctx.addIssue({ code: 'custom', path: [field, index], message: `"${value}" is not a port number between 1 and 65535` });
        });
      }
    }
  });

const clauses = <T extends z.ZodType>(item: T, what: string) =>
  z
    .array(item, { error: `must be a list of ${what}` })
    .min(1, { error: 'must not be empty' })
    .max(MAX_AUTHZ_CLAUSES, { error: `at most ${MAX_AUTHZ_CLAUSES} entries` });

const rule = strictObject(
  {
    from: clauses(strictObject({ source }, '{source: {...}}'), '{source: {...}}').optional(),
    to: clauses(strictObject({ operation }, '{operation: {...}}'), '{operation: {...}}').optional(),
    when: clauses(condition, 'conditions').optional(),
  },
  'a rule {from, to, when}',
);

export const AUTHZ_ACTIONS = ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'] as const;

/** Every value a rule lists, in its sources, operations and conditions. */
function valueCount(r: z.output<typeof rule>): number {
  const lists = [
    ...(r.from ?? []).flatMap(({ source }) => Object.values(source)),
    ...(r.to ?? []).flatMap(({ operation }) => Object.values(operation)),
    ...(r.when ?? []).flatMap((c) => [c.values, c.notValues]),
  ];
  return lists.reduce((sum, list) => sum + (Array.isArray(list) ? list.length : 0), 0);
}

export const authorizationPolicySpec = strictObject(
  {
    selector: strictObject({ matchLabels: labels }, '{matchLabels: {...}}').optional(),
    action: z.enum(AUTHZ_ACTIONS, { error: `must be one of ${AUTHZ_ACTIONS.join(', ')}` }).default('ALLOW'),
    rules: z.array(rule, { error: 'must be a list of rules' }).max(MAX_AUTHZ_RULES, { error: `at most ${MAX_AUTHZ_RULES} rules` }).optional(),
    provider: z.object({ name: z.string() }).optional(),
    targetRef: z.unknown().optional(),
    targetRefs: z.unknown().optional(),
  },
  'an AuthorizationPolicy spec {selector, action, rules}',
).superRefine((spec, ctx) => {
    const total = (spec.rules ?? []).reduce((sum, r) => sum + valueCount(r), 0);
    if (total > MAX_AUTHZ_POLICY_VALUES) {
      ctx.addIssue({ code: 'custom', path: ['rules'], message: `the rules list ${total} values in all; at most ${MAX_AUTHZ_POLICY_VALUES} per policy` });
    }
  });

export type AuthorizationPolicySpec = z.output<typeof authorizationPolicySpec>;
export type AuthorizationRuleSpec = z.output<typeof rule>;
