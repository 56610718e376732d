import { describe, expect, it } from 'vitest';
import { parseIstioText } from '../../src/istio/documents.js';
import { ISTIO_KIND_HANDLERS } from '../../src/istio/kinds.js';
import { policyFromFiles } from '../../src/istio/policy-set.js';
import { buildAuthorizationModel } from '../../src/model/authorization/build.js';
import { decide } from '../../src/model/authorization/decide.js';
import type { AuthzRequest } from '../../src/model/authorization/decide.js';
import { effectiveAuthorization } from '../../src/model/authorization/effective.js';
import type { AuthzWorkload } from '../../src/model/authorization/effective.js';
import type { AuthorizationModel } from '../../src/model/authorization/types.js';

const TD = 'meshbridge.local';
const WEB = { namespace: 'prod', labels: { app: 'web' } };

/** Policies written as Istio YAML documents, one string each: `name ns action` then the spec body. */
function model(...documents: string[]): AuthorizationModel {
  const text = documents
    .map((doc) => {
      const [head, ...body] = doc.split('\n');
      const [name, namespace, action] = head!.split(' ');
      return `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: ${name}, namespace: ${namespace} }\nspec:\n  action: ${action}\n${body.map((l) => `  ${l}`).join('\n')}\n`;
    })
    .join('---\n');
  const parsed = parseIstioText('authz.yaml', text, ISTIO_KIND_HANDLERS);
  expect(parsed.diagnostics).toEqual([]);
  return buildAuthorizationModel(policyFromFiles(new Map([['authz.yaml', parsed]])).authorizationPolicies).model;
}

function request(overrides: Partial<AuthzRequest> & { sa?: string; ns?: string } = {}): AuthzRequest {
  const { sa = 'frontend', ns = 'prod', ...rest } = overrides;
  return { principal: `spiffe://${TD}/ns/${ns}/sa/${sa}`, port: 8080, host: 'web.mesh', method: 'GET', path: '/', headers: {}, ...rest };
}

function verdict(m: AuthorizationModel, r: AuthzRequest, workload: AuthzWorkload = WEB): string {
  return decide(effectiveAuthorization(m, workload, r.port), r, TD);
}

describe("Istio's evaluation order and defaults", () => {
  it('no policy: allowed', () => {
    expect(verdict(model(), request())).toBe('allow');
  });
  it('an ALLOW policy without rules denies everything', () => {
    expect(verdict(model('a prod ALLOW'), request())).toBe('deny');
  });
  it('an ALLOW policy with one empty rule allows everything', () => {
    expect(verdict(model('a prod ALLOW\nrules: [{}]'), request())).toBe('allow');
  });
  it('a DENY policy without rules denies nothing', () => {
    expect(verdict(model('d prod DENY'), request())).toBe('allow');
    expect(effectiveAuthorization(model('d prod DENY'), WEB).deny).toEqual([]);
  });
  it('DENY is evaluated before ALLOW', () => {
    const m = model('a prod ALLOW\nrules: [{}]', `d prod DENY\nrules: [{ from: [{ source: { principals: ["${TD}/ns/prod/sa/intruder"] } }] }]`);
    expect(verdict(m, request({ sa: 'intruder' }))).toBe('deny');
    expect(verdict(m, request())).toBe('allow');
  });
  it('with an ALLOW policy present, what no ALLOW rule matches is denied', () => {
    const m = model(`a prod ALLOW\nrules: [{ from: [{ source: { principals: ["${TD}/ns/prod/sa/frontend"] } }] }]`);
    expect(verdict(m, request())).toBe('allow');
    expect(verdict(m, request({ sa: 'other' }))).toBe('deny');
    expect(verdict(m, request({ principal: undefined }))).toBe('deny');
  });
});

describe('which workloads a policy applies to', () => {
  const denyAll = (ns: string, selector = '') => `d ${ns} DENY\n${selector}rules: [{}]`;
  it('namespace-wide: every workload of its namespace, none of another', () => {
    expect(verdict(model(denyAll('prod')), request())).toBe('deny');
    expect(verdict(model(denyAll('dev')), request())).toBe('allow');
  });
  it('a selector picks workloads by label', () => {
    expect(verdict(model(denyAll('prod', 'selector: { matchLabels: { app: web } }\n')), request())).toBe('deny');
    expect(verdict(model(denyAll('prod', 'selector: { matchLabels: { app: db } }\n')), request())).toBe('allow');
  });
  it('the root namespace (istio-system) applies to every namespace, with its selector', () => {
    expect(verdict(model(denyAll('istio-system')), request(), { namespace: 'elsewhere', labels: {} })).toBe('deny');
    expect(verdict(model(denyAll('istio-system', 'selector: { matchLabels: { app: db } }\n')), request())).toBe('allow');
  });
});

describe('matching', () => {
  const allow = (ruleYaml: string) => model(`a prod ALLOW\nrules:\n- ${ruleYaml}`);
  const cases: [string, string, Partial<AuthzRequest> & { sa?: string; ns?: string }, 'allow' | 'deny'][] = [
    ['principal exact', `from: [{ source: { principals: ["${TD}/ns/prod/sa/frontend"] } }]`, {}, 'allow'],
    ['principal prefix', `from: [{ source: { principals: ["${TD}/ns/prod/*"] } }]`, { sa: 'anyone' }, 'allow'],
    ['principal suffix', 'from: [{ source: { principals: ["*/sa/frontend"] } }]', { ns: 'dev' }, 'allow'],
    ['principal presence without a certificate', 'from: [{ source: { principals: ["*"] } }]', { principal: undefined }, 'deny'],
    ['notPrincipals', `from: [{ source: { notPrincipals: ["${TD}/ns/prod/sa/frontend"] } }]`, {}, 'deny'],
    ['namespace exact', 'from: [{ source: { namespaces: [prod] } }]', {}, 'allow'],
    ['namespace of another trust domain', 'from: [{ source: { namespaces: [prod] } }]', { principal: 'spiffe://other.td/ns/prod/sa/frontend' }, 'deny'],
    ['namespace prefix', 'from: [{ source: { namespaces: ["pr*"] } }]', {}, 'allow'],
    ['notNamespaces', 'from: [{ source: { notNamespaces: ["*od"] } }]', {}, 'deny'],
    ['two sources: either', `from: [{ source: { namespaces: [dev] } }, { source: { principals: ["*/sa/frontend"] } }]`, {}, 'allow'],
    ['host with a port', 'to: [{ operation: { hosts: [web.mesh] } }]', { host: 'WEB.mesh:8080' }, 'allow'],
    ['host suffix', 'to: [{ operation: { hosts: ["*.mesh"] } }]', { host: 'web.mesh' }, 'allow'],
    ['notHosts', 'to: [{ operation: { notHosts: [web.mesh] } }]', {}, 'deny'],
    ['method', 'to: [{ operation: { methods: [POST] } }]', {}, 'deny'],
    ['path prefix', 'to: [{ operation: { paths: ["/api/*"] } }]', { path: '/api/items' }, 'allow'],
    ['notPaths suffix', 'to: [{ operation: { notPaths: ["*.secret"] } }]', { path: '/a.secret' }, 'deny'],
    ['port of the request', 'to: [{ operation: { ports: ["9090"] } }]', {}, 'deny'],
    ['notPorts', 'to: [{ operation: { notPorts: ["9090"] } }]', {}, 'allow'],
    ['when header value', 'when: [{ key: "request.headers[x-tenant]", values: [gold] }]', { headers: { 'x-tenant': 'gold' } }, 'allow'],
    ['when header absent', 'when: [{ key: "request.headers[x-tenant]", values: ["*"] }]', {}, 'deny'],
    ['when header notValues', 'when: [{ key: "request.headers[x-tenant]", notValues: [bronze] }]', { headers: { 'x-tenant': 'bronze' } }, 'deny'],
    ['when source.namespace', 'when: [{ key: source.namespace, values: [prod] }]', {}, 'allow'],
    ['when source.principal', `when: [{ key: source.principal, notValues: ["${TD}/ns/prod/sa/frontend"] }]`, {}, 'deny'],
    ['when destination.port', 'when: [{ key: destination.port, values: ["8080"] }]', {}, 'allow'],
    ['from and to both needed', 'from: [{ source: { namespaces: [prod] } }]\n  to: [{ operation: { methods: [DELETE] } }]', {}, 'deny'],
  ];
  it.each(cases)('%s', (_name, ruleYaml, r, expected) => {
    expect(verdict(allow(ruleYaml), request(r))).toBe(expected);
  });
});

describe('per port', () => {
  it('a rule that can only match other ports is left out; port constraints that hold are removed', () => {
    const m = model('a prod ALLOW\nrules:\n- to: [{ operation: { ports: ["9090"] } }]\n- to: [{ operation: { ports: ["8080"], methods: [GET] } }]\n  when: [{ key: destination.port, values: ["8080"] }]');
    const on8080 = effectiveAuthorization(m, WEB, 8080).allow[0]!;
    expect(on8080.rules.map((r) => r.field)).toEqual(['spec.rules[1]']);
    expect(on8080.rules[0]!.to[0]!.ports).toEqual({ values: [], notValues: [] });
    expect(on8080.rules[0]!.when).toEqual([]);
    // The ALLOW policy stays on a port none of its rules can match: its presence still denies there.
    const on7070 = effectiveAuthorization(m, WEB, 7070);
    expect(on7070.allow.map((p) => p.rules.length)).toEqual([0]);
    expect(verdict(m, request({ port: 7070 }))).toBe('deny');
  });
});
