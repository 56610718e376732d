import { describe, expect, it } from 'vitest';
import { formatDiagnostic } from '../../src/errors.js';
import { parseIstioText } from '../../src/istio/documents.js';
import { ISTIO_KIND_HANDLERS as POLICY_KIND_HANDLERS } from '../../src/istio/kinds.js';
import { policyFromFiles } from '../../src/istio/policy-set.js';
import { resolvePolicy } from '../../src/model/routing/resolve.js';
import { catalogOf, service } from '../helpers/fixtures.js';

const VS_HEAD = 'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: vs }\nspec:\n';
const DR_HEAD = 'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: { name: dr }\nspec:\n';

function findings(text: string): string[] {
  return parseIstioText('rules.yaml', text, POLICY_KIND_HANDLERS).diagnostics.map(formatDiagnostic);
}

const vs = (http: string) => `${VS_HEAD}  hosts: [a.mesh]\n  http:\n${http}`;
const route = (extra: string) => vs(`    - route: [{ destination: { host: a.mesh } }]\n${extra}`);
const dr = (policy: string) => `${DR_HEAD}  host: a.mesh\n  trafficPolicy:\n${policy}`;

describe('policy validation: every field with a wrong type or value names file, document and field', () => {
  const cases: [string, string, string][] = [
    ['VS hosts missing', `${VS_HEAD}  http: []\n`, 'spec.hosts: '],
    ['VS hosts not a list', `${VS_HEAD}  hosts: a.mesh\n`, 'spec.hosts: must be a list of hostnames'],
    ['route and redirect together', vs('    - route: [{ destination: { host: a.mesh } }]\n      redirect: { uri: /x }\n'), 'spec.http[0]: must have exactly one of route, redirect or directResponse'],
    ['no action', vs('    - match: [{ uri: { prefix: / } }]\n'), 'spec.http[0]: must have exactly one of route, redirect or directResponse'],
    ['weights not adding to 100', vs('    - route:\n        - { destination: { host: a.mesh, subset: v1 }, weight: 70 }\n        - { destination: { host: a.mesh, subset: v2 }, weight: 20 }\n'), 'spec.http[0].route: destination weights add up to 90, not 100'],
    ['weight over 100', vs('    - route: [{ destination: { host: a.mesh }, weight: 150 }]\n'), 'spec.http[0].route[0].weight: must be at most 100'],
    ['weight as text', vs('    - route: [{ destination: { host: a.mesh }, weight: "80" }]\n'), 'spec.http[0].route[0].weight: must be a weight'],
    ['destination without host', vs('    - route: [{ destination: { subset: v1 } }]\n'), 'spec.http[0].route[0].destination.host: must be a hostname'],
    ['destination port out of range', vs('    - route: [{ destination: { host: a.mesh, port: { number: 0 } } }]\n'), 'spec.http[0].route[0].destination.port.number: must be between 1 and 65535'],
    ['string match with two kinds', vs('    - match: [{ uri: { exact: /a, prefix: /b } }]\n      route: [{ destination: { host: a.mesh } }]\n'), 'spec.http[0].match[0].uri: must have exactly one of exact, prefix or regex'],
    ['bad regex', vs('    - match: [{ headers: { x: { regex: "([" } } }]\n      route: [{ destination: { host: a.mesh } }]\n'), 'spec.http[0].match[0].headers.x.regex: invalid regular expression'],
    ['match port out of range', vs('    - match: [{ port: 70000 }]\n      route: [{ destination: { host: a.mesh } }]\n'), 'spec.http[0].match[0].port: must be between 1 and 65535'],
    ['timeout not a duration', route('      timeout: soon\n'), 'spec.http[0].timeout: "soon" is not a duration'],
    ['timeout as a number', route('      timeout: 5\n'), 'spec.http[0].timeout: must be a duration'],
    ['retries without attempts', route('      retries: { perTryTimeout: 1s }\n'), 'spec.http[0].retries.attempts: must be a whole number'],
    ['negative retries', route('      retries: { attempts: -1 }\n'), 'spec.http[0].retries.attempts: must not be negative'],
    // Envoy ignores an unknown retry_on token with only a log line (issue 11, defect 3).
    ['unknown retry condition', route('      retries: { attempts: 2, retryOn: "5xx,gateway-eror" }\n'), 'spec.http[0].retries.retryOn: unknown retry condition "gateway-eror" (an HTTP status code, or one of 5xx'],
    ['status code out of range in retryOn', route('      retries: { attempts: 2, retryOn: "5xx,999" }\n'), 'spec.http[0].retries.retryOn: unknown retry condition "999"'],
    ['empty retryOn', route('      retries: { attempts: 2, retryOn: " , " }\n'), 'spec.http[0].retries.retryOn: must name at least one retry condition'],
    ['header match with two kinds', vs('    - match: [{ headers: { x: { exact: a, prefix: b } } }]\n      route: [{ destination: { host: a.mesh } }]\n'), 'spec.http[0].match[0].headers.x: must have at most one of exact, prefix or regex ({} matches on presence)'],
    ['empty uri match (presence is for headers only)', vs('    - match: [{ uri: {} }]\n      route: [{ destination: { host: a.mesh } }]\n'), 'spec.http[0].match[0].uri: must have exactly one of exact, prefix or regex'],
    ['fault with neither delay nor abort', route('      fault: {}\n'), 'spec.http[0].fault: must have delay or abort'],
    ['abort with both statuses', route('      fault: { abort: { httpStatus: 503, grpcStatus: UNAVAILABLE } }\n'), 'spec.http[0].fault.abort: must have exactly one of httpStatus or grpcStatus'],
    ['abort with an unknown gRPC status', route('      fault: { abort: { grpcStatus: BROKEN } }\n'), 'spec.http[0].fault.abort.grpcStatus: must be a gRPC status name'],
    ['abort with status 700', route('      fault: { abort: { httpStatus: 700 } }\n'), 'spec.http[0].fault.abort.httpStatus: must be an HTTP status between 200 and 599'],
    ['percentage over 100', route('      fault: { delay: { fixedDelay: 1s, percentage: { value: 120 } } }\n'), 'spec.http[0].fault.delay.percentage.value: must be between 0 and 100'],
    ['delay without fixedDelay', route('      fault: { delay: { percentage: { value: 10 } } }\n'), 'spec.http[0].fault.delay.fixedDelay: must be a duration'],
    ['mirror percentage as text', route('      mirror: { host: a.mesh }\n      mirrorPercentage: { value: lots }\n'), 'spec.http[0].mirrorPercentage.value: must be a number'],
    ['redirect code 200', vs('    - redirect: { uri: /x, redirectCode: 200 }\n'), 'spec.http[0].redirect.redirectCode: must be one of 301, 302, 303, 307, 308'],
    ['rewrite with redirect', vs('    - redirect: { uri: /x }\n      rewrite: { uri: /y }\n'), 'spec.http[0].rewrite: rewrite cannot be combined with redirect'],
    ['header operation value not a string', route('      headers: { request: { set: { x: [1] } } }\n'), 'spec.http[0].headers.request.set.x: '],
    ['DR host missing', `${DR_HEAD}  subsets: []\n`, 'spec.host: must be a hostname'],
    ['duplicate subset', `${DR_HEAD}  host: a.mesh\n  subsets: [{ name: v1, labels: { v: "1" } }, { name: v1, labels: { v: "2" } }]\n`, 'spec.subsets[1].name: subset "v1" is declared twice'],
    ['subset name with spaces', `${DR_HEAD}  host: a.mesh\n  subsets: [{ name: "v 1" }]\n`, 'spec.subsets[0].name: must be letters, digits'],
    ['subset labels not strings', `${DR_HEAD}  host: a.mesh\n  subsets: [{ name: v1, labels: { version: 2 } }]\n`, 'spec.subsets[0].labels.version: label values must be strings'],
    ['unknown simple LB', dr('    loadBalancer: { simple: FASTEST }\n'), 'spec.trafficPolicy.loadBalancer.simple: must be one of'],
    ['simple and consistentHash', dr('    loadBalancer: { simple: RANDOM, consistentHash: { useSourceIp: true } }\n'), 'spec.trafficPolicy.loadBalancer: simple and consistentHash are mutually exclusive'],
    ['consistentHash with two keys', dr('    loadBalancer: { consistentHash: { httpHeaderName: x, useSourceIp: true } }\n'), 'spec.trafficPolicy.loadBalancer.consistentHash: must have exactly one of'],
    ['distribute weights not 100', dr('    loadBalancer: { localityLbSetting: { distribute: [{ from: "a/*", to: { "a/*": 60 } }] } }\n'), 'spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to: weights must add up to 100'],
    ['distribute with failover', dr('    loadBalancer: { localityLbSetting: { distribute: [{ from: "a/*", to: { "a/*": 100 } }], failover: [{ from: a, to: b }] } }\n'), 'spec.trafficPolicy.loadBalancer.localityLbSetting: distribute and failover are mutually exclusive'],
    ['maxConnections negative', dr('    connectionPool: { tcp: { maxConnections: -5 } }\n'), 'spec.trafficPolicy.connectionPool.tcp.maxConnections: must not be negative'],
    ['connectTimeout bad', dr('    connectionPool: { tcp: { connectTimeout: fast } }\n'), 'spec.trafficPolicy.connectionPool.tcp.connectTimeout: "fast" is not a duration'],
    ['http2MaxRequests fractional', dr('    connectionPool: { http: { http2MaxRequests: 1.5 } }\n'), 'spec.trafficPolicy.connectionPool.http.http2MaxRequests: must be a whole number'],
    ['idleTimeout as number', dr('    connectionPool: { http: { idleTimeout: 30 } }\n'), 'spec.trafficPolicy.connectionPool.http.idleTimeout: must be a duration'],
    ['maxEjectionPercent over 100', dr('    outlierDetection: { maxEjectionPercent: 120 }\n'), 'spec.trafficPolicy.outlierDetection.maxEjectionPercent: must be at most 100'],
    ['interval bad', dr('    outlierDetection: { interval: often }\n'), 'spec.trafficPolicy.outlierDetection.interval: "often" is not a duration'],
    ['consecutive5xxErrors as text', dr('    outlierDetection: { consecutive5xxErrors: five }\n'), 'spec.trafficPolicy.outlierDetection.consecutive5xxErrors: must be a whole number'],
    ['unknown tls mode', dr('    tls: { mode: STRICT }\n'), 'spec.trafficPolicy.tls.mode: must be DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL'],
    ['MUTUAL without certificates', dr('    tls: { mode: MUTUAL }\n'), 'spec.trafficPolicy.tls: MUTUAL needs clientCertificate and privateKey'],
    ['ISTIO_MUTUAL with certificate files', dr('    tls: { mode: ISTIO_MUTUAL, clientCertificate: /etc/c.pem }\n'), 'spec.trafficPolicy.tls.clientCertificate: ISTIO_MUTUAL uses the workload certificate from meshbridge agent'],
    ['port level twice', dr('    portLevelSettings: [{ port: { number: 80 } }, { port: { number: 80 } }]\n'), 'spec.trafficPolicy.portLevelSettings[1].port.number: port 80 has two settings'],
    ['port level without port', dr('    portLevelSettings: [{ loadBalancer: { simple: RANDOM } }]\n'), 'spec.trafficPolicy.portLevelSettings[0].port: '],
  ];

  for (const [name, text, expected] of cases) {
    it(name, () => {
      const found = findings(text);
      expect(found.some((f) => f.startsWith('error: rules.yaml: document 0: ') && f.includes(expected)), found.join('\n')).toBe(true);
    });
  }

  it('accepts Istio\'s header presence ({}) under headers and withoutHeaders, and retryOn with status codes (issue 11, defects 3 and 4)', () => {
    const text = vs(
      '    - match: [{ headers: { x-flag: {} }, withoutHeaders: { x-off: {} } }]\n      route: [{ destination: { host: a.mesh } }]\n      retries: { attempts: 2, retryOn: "gateway-error,503, 504" }\n',
    );
    expect(findings(text)).toEqual([]);
  });

  it('collects every problem of a file, not only the first', () => {
    const found = findings(`${route('      timeout: soon\n      retries: { attempts: -1 }\n')}---\n${dr('    tls: { mode: STRICT }\n')}`);
    expect(found.filter((f) => f.startsWith('error:'))).toHaveLength(3);
    expect(found.some((f) => f.includes('document 1: spec.trafficPolicy.tls.mode'))).toBe(true);
  });

  it('warns about fields Istio has and meshbridge does not implement, instead of dropping them', () => {
    const text = `${VS_HEAD}  hosts: [a.mesh]\n  exportTo: ["."]\n  tcp: [{ route: [] }]\n  http:\n    - route: [{ destination: { host: a.mesh } }]\n      corsPolicy: { allowOrigins: [] }\n      match: [{ sourceLabels: { app: x } }]\n`;
    const parsed = parseIstioText('rules.yaml', text, POLICY_KIND_HANDLERS);
    const policy = policyFromFiles(new Map([['rules.yaml', parsed]]));
    expect(policy.diagnostics.map((d) => d.field).sort()).toEqual(['spec.exportTo', 'spec.http[0].corsPolicy', 'spec.http[0].match[0].sourceLabels', 'spec.tcp']);
    expect(policy.diagnostics.every((d) => d.severity === 'warning' && d.message.includes('not implemented'))).toBe(true);
  });

  it('leaves out a route to a subset no DestinationRule declares, whichever file declares it (order does not matter)', () => {
    const catalog = catalogOf(service('a.mesh').port(80).build());
    const routeToV2 = parseIstioText('a-vs.yaml', vs('    - route: [{ destination: { host: a, subset: v2 } }]\n'), POLICY_KIND_HANDLERS);
    const declaresV2 = parseIstioText('b-dr.yaml', `${DR_HEAD}  host: a.mesh\n  subsets: [{ name: v2, labels: { v: "2" } }]\n`, POLICY_KIND_HANDLERS);
    const alone = resolvePolicy(catalog, policyFromFiles(new Map([['a-vs.yaml', routeToV2]])));
    expect(alone.virtualServices.size).toBe(0);
    expect(alone.diagnostics.map(formatDiagnostic)).toEqual([
      'error: a-vs.yaml: document 0: spec.http[0].route[0].destination.subset: subset "v2" of a.mesh is not declared: no DestinationRule applies to a.mesh; routes for a.mesh stay as they were without this rule',
    ]);
    // On main the VirtualService was rejected when read before the rule's file ("a-vs" < "b-dr") and stayed rejected.
    for (const files of [new Map([['a-vs.yaml', routeToV2], ['b-dr.yaml', declaresV2]]), new Map([['b-dr.yaml', declaresV2], ['a-vs.yaml', routeToV2]])]) {
      const resolved = resolvePolicy(catalog, policyFromFiles(files));
      expect(resolved.virtualServices.get('a.mesh')?.name).toBe('vs');
      expect(resolved.diagnostics).toEqual([]);
    }
  });

  it('applies the first of two VirtualServices for one host by name, whatever their order, and reports the other (Istio\'s sidecar behaviour: no merge)', () => {
    const first = `${vs('    - route: [{ destination: { host: a.mesh } }]\n')}`;
    const second = `${VS_HEAD.replace('name: vs', 'name: zz-later')}  hosts: [a]\n  http:\n    - route: [{ destination: { host: a.mesh } }]\n`;
    for (const [text, loser] of [[`${first}---\n${second}`, 1], [`${second}---\n${first}`, 0]] as const) {
      const policy = policyFromFiles(new Map([['rules.yaml', parseIstioText('rules.yaml', text, POLICY_KIND_HANDLERS)]]));
      const resolved = resolvePolicy(catalogOf(service('a.mesh').port(80).build()), policy);
      expect(resolved.virtualServices.get('a.mesh')?.name).toBe('vs');
      expect(resolved.diagnostics.map(formatDiagnostic)).toEqual([
        `warning: rules.yaml: document ${loser}: spec.hosts[0]: a.mesh is already routed by VirtualService vs (rules.yaml document ${1 - loser}); this rule is ignored for it (one VirtualService per host, as Istio does for sidecars)`,
      ]);
    }
  });

  it('does not let rules form a cycle: delegation, the one way Istio rules chain, is reported and not followed', () => {
    const text = vs('    - delegate: { name: vs, namespace: default }\n');
    const parsed = parseIstioText('rules.yaml', text, POLICY_KIND_HANDLERS);
    const policy = policyFromFiles(new Map([['rules.yaml', parsed]]));
    expect(policy.diagnostics.map(formatDiagnostic)).toContain('warning: rules.yaml: document 0: spec.http[0].delegate: not implemented by meshbridge, ignored');
  });

  it('resolves short names, and refuses an ambiguous one', () => {
    const catalog = catalogOf(service('a.one.mesh').port(80).build(), service('a.two.mesh').port(80).build(), service('b.one.mesh').port(80).build());
    const text = `${DR_HEAD}  host: b\n---\n${DR_HEAD.replace('name: dr', 'name: amb')}  host: a\n`;
    const policy = policyFromFiles(new Map([['rules.yaml', parseIstioText('rules.yaml', text, POLICY_KIND_HANDLERS)]]));
    const resolved = resolvePolicy(catalog, policy);
    expect([...resolved.destinationRules.keys()]).toEqual(['b.one.mesh']);
    expect(resolved.diagnostics[0]?.message).toMatch(/short name a is ambiguous \(a\.one\.mesh, a\.two\.mesh\)/);
  });
});
