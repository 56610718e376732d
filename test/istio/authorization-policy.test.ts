import { describe, expect, it } from 'vitest';
import { formatDiagnostic } from '../../src/errors.js';
import { parseIstioText } from '../../src/istio/documents.js';
import { MAX_AUTHZ_POLICY_VALUES, MAX_AUTHZ_RULES, MAX_AUTHZ_VALUES, MAX_AUTHZ_VALUE_LENGTH } from '../../src/istio/authorization-policy.js';
import { ISTIO_KIND_HANDLERS } from '../../src/istio/kinds.js';
import { policyFromFiles } from '../../src/istio/policy-set.js';
import { buildAuthorizationModel } from '../../src/model/authorization/build.js';

const HEAD = 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: ap, namespace: prod }\nspec:\n';

function parse(text: string) {
  return parseIstioText('authz.yaml', text, ISTIO_KIND_HANDLERS);
}

function findings(text: string): string[] {
  return parse(text).diagnostics.map(formatDiagnostic);
}

function modelOf(text: string) {
  const parsed = parse(text);
  expect(parsed.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic)).toEqual([]);
  const set = policyFromFiles(new Map([['authz.yaml', parsed]]));
  return buildAuthorizationModel(set.authorizationPolicies);
}

const rule = (body: string) => `${HEAD}  rules:\n  - ${body}\n`;

describe('AuthorizationPolicy validation: errors name file, document and field', () => {
  const cases: [string, string, string][] = [
    ['unknown action', `${HEAD}  action: REJECT\n`, 'spec.action: must be one of ALLOW, DENY, AUDIT, CUSTOM'],
    ['selector without matchLabels shape', `${HEAD}  selector: { app: web }\n`, 'spec.selector.matchLabels'],
    ['label value not a string', `${HEAD}  selector: { matchLabels: { version: 2 } }\n`, 'spec.selector.matchLabels.version: label values must be strings'],
    ['rules not a list', `${HEAD}  rules: {}\n`, 'spec.rules: must be a list of rules'],
    ['empty source', rule('from: [{ source: {} }]'), 'spec.rules[0].from[0].source: must set at least one field'],
    ['from entry without source', rule('from: [{ principals: [a] }]'), 'spec.rules[0].from[0].source'],
    ['empty operation', rule('to: [{ operation: {} }]'), 'spec.rules[0].to[0].operation: must set at least one field'],
    ['principals not a list', rule('from: [{ source: { principals: "a/ns/b/sa/c" } }]'), 'spec.rules[0].from[0].source.principals: must be a list of strings'],
    ['empty principals list', rule('from: [{ source: { principals: [] } }]'), 'spec.rules[0].from[0].source.principals: must not be empty'],
    ['empty principal', rule('from: [{ source: { principals: [""] } }]'), 'spec.rules[0].from[0].source.principals[0]: must not be empty'],
    ['wildcard in the middle', rule('to: [{ operation: { paths: ["/api/*/items"] } }]'), 'spec.rules[0].to[0].operation.paths[0]: "/api/*/items": "*" is allowed only alone'],
    ['wildcard at both ends', rule('to: [{ operation: { hosts: ["*mid*"] } }]'), 'spec.rules[0].to[0].operation.hosts[0]: "*mid*": "*" is allowed only alone'],
    ['port out of range', rule('to: [{ operation: { ports: ["70000"] } }]'), 'spec.rules[0].to[0].operation.ports[0]: "70000" is not a port number between 1 and 65535'],
    ['port not a number', rule('to: [{ operation: { notPorts: ["http"] } }]'), 'spec.rules[0].to[0].operation.notPorts[0]: "http" is not a port number'],
    ['condition without values', rule('when: [{ key: source.principal }]'), 'spec.rules[0].when[0]: must have values or notValues'],
    ['unknown condition key', rule('when: [{ key: request.colour, values: [red] }]'), 'spec.rules[0].when[0].key: unknown key "request.colour"'],
    ['header name with a space', rule('when: [{ key: "request.headers[x y]", values: [a] }]'), 'spec.rules[0].when[0].key: "x y" is not an HTTP header name'],
    ['destination.port value not a port', rule('when: [{ key: destination.port, values: ["80", "eighty"] }]'), 'spec.rules[0].when[0].values[1]: "eighty" is not a port number'],
    ['wrong API group', HEAD.replace('security.istio.io/v1', 'networking.istio.io/v1'), 'apiVersion: unsupported apiVersion "networking.istio.io/v1" for AuthorizationPolicy'],
  ];
  it.each(cases)('%s', (_name, text, expected) => {
    const found = findings(text);
    expect(found.some((f) => f.startsWith('error: authz.yaml: document 0: ') && f.includes(expected)), found.join('\n')).toBe(true);
  });

  it('an unknown field is an error, at its place: a misspelt notPaths must not allow what it names', () => {
    expect(findings(rule('to: [{ operation: { methods: [GET], notPath: [/admin] } }]'))).toEqual([
      'error: authz.yaml: document 0: spec.rules[0].to[0].operation: unknown field "notPath" (an access policy is not applied with fields it does not understand)',
    ]);
    expect(findings(`${HEAD}  action: DENY\n  rule: [{}]\n`)).toEqual([expect.stringContaining('error: authz.yaml: document 0: spec: unknown field "rule"')]);
  });

  it('a valid policy with every supported field has no findings', () => {
    const text = `${HEAD}  selector: { matchLabels: { app: web } }\n  action: DENY\n  rules:\n  - from:\n    - source: { principals: ["td/ns/a/sa/b", "td/ns/x/*", "*/sa/admin", "*"], notPrincipals: [x], namespaces: [prod], notNamespaces: ["dev*"] }\n    to:\n    - operation: { hosts: [a.mesh, "*.mesh"], notHosts: [b.mesh], ports: ["8080", 9090], notPorts: ["1"], methods: [GET], notMethods: [DELETE], paths: ["/api/*"], notPaths: ["*/admin"] }\n    when:\n    - { key: "request.headers[x-tenant]", values: [gold] }\n    - { key: source.principal, notValues: [td/ns/a/sa/c] }\n    - { key: source.namespace, values: [prod] }\n    - { key: destination.port, values: ["8080"] }\n`;
    expect(findings(text)).toEqual([]);
  });
});

describe('AuthorizationPolicy bounds: hostile sizes are refused, not run per request', () => {
  it(`more than ${MAX_AUTHZ_RULES} rules`, () => {
    const rules = Array.from({ length: MAX_AUTHZ_RULES + 1 }, () => '  - {}\n').join('');
    expect(findings(`${HEAD}  rules:\n${rules}`)).toContainEqual(expect.stringContaining(`spec.rules: at most ${MAX_AUTHZ_RULES} rules`));
  });
  it(`more than ${MAX_AUTHZ_VALUES} values in one list`, () => {
    const values = Array.from({ length: MAX_AUTHZ_VALUES + 1 }, (_, i) => `p${i}`).join(', ');
    expect(findings(rule(`from: [{ source: { principals: [${values}] } }]`))).toContainEqual(
      expect.stringContaining(`spec.rules[0].from[0].source.principals: at most ${MAX_AUTHZ_VALUES} values`),
    );
  });
  it(`more than ${MAX_AUTHZ_POLICY_VALUES} values in the whole policy, each list within its own limit`, () => {
    const values = Array.from({ length: MAX_AUTHZ_VALUES }, (_, i) => `p${i}`).join(', ');
    const rules = Array.from({ length: MAX_AUTHZ_POLICY_VALUES / MAX_AUTHZ_VALUES + 1 }, () => `  - from: [{ source: { principals: [${values}] } }]\n`).join('');
    expect(findings(`${HEAD}  rules:\n${rules}`)).toEqual([
      expect.stringContaining(`spec.rules: the rules list ${MAX_AUTHZ_POLICY_VALUES + MAX_AUTHZ_VALUES} values in all; at most ${MAX_AUTHZ_POLICY_VALUES} per policy`),
    ]);
  });
  it(`a value over ${MAX_AUTHZ_VALUE_LENGTH} characters`, () => {
    expect(findings(rule(`to: [{ operation: { paths: ["/${'a'.repeat(MAX_AUTHZ_VALUE_LENGTH)}"] } }]`))).toContainEqual(
      expect.stringContaining(`spec.rules[0].to[0].operation.paths[0]: must be at most ${MAX_AUTHZ_VALUE_LENGTH} characters`),
    );
  });
});

describe('AuthorizationPolicy: what meshbridge cannot enforce is reported and applied fail-closed', () => {
  it('AUDIT has no effect and says so', () => {
    const { model, diagnostics } = modelOf(`${HEAD}  action: AUDIT\n  rules: [{}]\n`);
    expect(model.policies).toEqual([]);
    expect(diagnostics.map(formatDiagnostic)).toEqual([expect.stringContaining('authz.yaml: document 0: spec.action: AUDIT only logs')]);
  });

  it('CUSTOM denies what its rules match', () => {
    const { model, diagnostics } = modelOf(`${HEAD}  action: CUSTOM\n  provider: { name: ext }\n  rules: [{ to: [{ operation: { paths: ["/admin*"] } }] }]\n`);
    expect(model.policies.map((p) => [p.action, p.rules.length])).toEqual([['DENY', 1]]);
    expect(diagnostics.map(formatDiagnostic)).toEqual([expect.stringContaining('spec.action: CUSTOM (external authorization) is not supported')]);
  });

  it('an ALLOW rule needing an unenforceable source field is left out (it allows nothing)', () => {
    const { model, diagnostics } = modelOf(rule('from: [{ source: { principals: [td/ns/a/sa/b], requestPrincipals: ["*"] } }]').replace('spec:\n', 'spec:\n  action: ALLOW\n'));
    expect(model.policies[0]!.rules).toEqual([]);
    expect(diagnostics.map(formatDiagnostic)).toEqual([
      expect.stringContaining('spec.rules[0].from[0].source.requestPrincipals: meshbridge cannot enforce this; the ALLOW rule spec.rules[0] is left out'),
    ]);
  });

  it('a DENY rule with an unenforceable condition applies without it (it denies more)', () => {
    const { model, diagnostics } = modelOf(`${HEAD}  action: DENY\n  rules:\n  - to: [{ operation: { paths: ["/x"] } }]\n    when: [{ key: source.ip, values: [10.0.0.1] }]\n`);
    const [only] = model.policies[0]!.rules;
    expect(only!.when).toEqual([]);
    expect(only!.to).toHaveLength(1);
    expect(diagnostics.map(formatDiagnostic)).toEqual([expect.stringContaining('spec.rules[0].when[0]: meshbridge cannot enforce this; the DENY rule spec.rules[0] applies without it')]);
  });

  it('a DENY source whose only fields are unenforceable matches every source once they are dropped', () => {
    const { model } = modelOf(`${HEAD}  action: DENY\n  rules: [{ from: [{ source: { ipBlocks: [10.0.0.0/8] } }, { source: { namespaces: [dev] } }], to: [{ operation: { paths: ["/admin"] } }] }]\n`);
    expect(model.policies[0]!.rules[0]!.from).toEqual([]);
    expect(model.policies[0]!.rules[0]!.to).toHaveLength(1);
  });

  it('targetRef applies to no sidecar', () => {
    const { model, diagnostics } = modelOf(`${HEAD}  targetRef: { kind: Gateway, name: gw }\n  rules: [{}]\n`);
    expect(model.policies).toEqual([]);
    expect(diagnostics.map(formatDiagnostic)).toEqual([expect.stringContaining('spec.targetRef: targetRef attaches a policy to a gateway')]);
  });

  it('v1beta1 is accepted and action defaults to ALLOW', () => {
    const { model } = modelOf(HEAD.replace('security.istio.io/v1', 'security.istio.io/v1beta1') + '  selector: { matchLabels: { app: web } }\n');
    expect(model.policies).toEqual([expect.objectContaining({ name: 'ap', namespace: 'prod', action: 'ALLOW', selector: { app: 'web' }, rules: [] })]);
  });
});
