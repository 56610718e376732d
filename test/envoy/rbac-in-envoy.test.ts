import { Agent, request } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIstioText } from '../../src/istio/documents.js';
import { ISTIO_KIND_HANDLERS } from '../../src/istio/kinds.js';
import { policyFromFiles } from '../../src/istio/policy-set.js';
import { buildAuthorizationModel } from '../../src/model/authorization/build.js';
import { decide } from '../../src/model/authorization/decide.js';
import type { AuthzRequest } from '../../src/model/authorization/decide.js';
import { effectiveAuthorization } from '../../src/model/authorization/effective.js';
import type { EffectiveAuthorization } from '../../src/model/authorization/types.js';
import { createCa, issueCertificate } from '../../src/security/ca.js';
import type { PemPair } from '../../src/security/ca.js';
import { rbacHttpFilters } from '../../src/xds/translate/rbac.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { freePort } from '../helpers/envoy.js';
import { StaticEnvoy } from '../helpers/static-envoy.js';
import { tempDir } from '../helpers/tmp.js';
import type { TempDir } from '../helpers/tmp.js';

/**
 * The RBAC filters meshbridge produces, loaded by a real Envoy 1.40 behind an
 * mTLS listener, each request's answer compared with the model's decision
 * (the reference semantics of test/model/authorization.test.ts): Envoy must
 * agree with Istio's rules on every request, allowing some and denying others.
 */

const TD = 'meshbridge.local';
const WORKLOAD = { namespace: 'prod', labels: { app: 'web' } };

interface Scenario {
  readonly name: string;
  /** YAML documents; `PORT` is replaced by the listener's port. */
  readonly yaml: string;
  /** Decide port conditions in the model (the per-port filter) or leave them to Envoy's destination_port. */
  readonly pruneByPort: boolean;
}

const doc = (name: string, action: string, body: string) =>
  `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: ${name}, namespace: prod }\nspec:\n  action: ${action}\n${body}`;

const SCENARIOS: Scenario[] = [
  {
    name: 'a DENY on one principal beside an allow-all',
    yaml: [doc('deny-intruder', 'DENY', `  rules: [{ from: [{ source: { principals: ["${TD}/ns/prod/sa/intruder"] } }] }]\n`), doc('allow-all', 'ALLOW', '  rules: [{}]\n')].join('---\n'),
    pruneByPort: true,
  },
  {
    name: 'ALLOW by principal with a header condition, or by path',
    yaml: doc(
      'frontend-gold',
      'ALLOW',
      `  rules:\n  - from: [{ source: { principals: ["${TD}/ns/prod/sa/frontend"] } }]\n    when: [{ key: "request.headers[x-tenant]", values: [gold, "plat*"] }]\n  - to: [{ operation: { paths: ["/public/*"], notMethods: [DELETE] } }]\n`,
    ),
    pruneByPort: true,
  },
  {
    name: 'every operation field, ports left to Envoy',
    yaml: doc(
      'operations',
      'ALLOW',
      `  rules:\n  - from: [{ source: { namespaces: ["pr*"], notPrincipals: ["*/sa/intruder"] } }]\n    to:\n    - operation: { hosts: [web.mesh, "*.web.mesh"], ports: ["PORT"], methods: [GET, "P*"], notPaths: ["*.secret", /admin] }\n    - operation: { notHosts: ["*.mesh"], notPorts: ["1"], paths: ["/api/*"] }\n    when: [{ key: destination.port, values: ["PORT"] }, { key: source.namespace, notValues: [dev] }]\n`,
    ),
    pruneByPort: false,
  },
  {
    // Hosts and namespaces become RE2 patterns: the longest names Kubernetes and DNS allow must stay within what Envoy accepts.
    name: 'the longest names, as regular expressions',
    yaml: doc(
      'long-names',
      'ALLOW',
      `  rules:\n  - from: [{ source: { namespaces: [prod, "${'n'.repeat(63)}", "*${'s'.repeat(62)}"] } }]\n    to: [{ operation: { hosts: [web.mesh, "${`${'a'.repeat(63)}.`.repeat(3)}${'b'.repeat(61)}", "*.${'c'.repeat(63)}.${'d'.repeat(63)}.${'e'.repeat(63)}"] } }]\n`,
    ),
    pruneByPort: true,
  },
  {
    name: 'an ALLOW without rules denies everything',
    yaml: doc('nothing', 'ALLOW', ''),
    pruneByPort: true,
  },
  {
    name: 'DENY by namespace and presence, header absence',
    yaml: [
      doc('deny-dev', 'DENY', '  rules:\n  - from: [{ source: { notNamespaces: ["*od"] } }]\n  - when: [{ key: "request.headers[x-tenant]", notValues: ["*"] }]\n    to: [{ operation: { paths: ["/api*"] } }]\n'),
      doc('allow-authenticated', 'ALLOW', '  rules: [{ from: [{ source: { principals: ["*"] } }] }]\n'),
    ].join('---\n'),
    pruneByPort: true,
  },
];

interface Caller {
  readonly name: string;
  readonly certificate?: PemPair;
}

interface Variant {
  readonly method: string;
  readonly path: string;
  readonly host: (port: number) => string;
  readonly headers: Readonly<Record<string, string>>;
}

const VARIANTS: Variant[] = [
  { method: 'GET', path: '/', host: () => 'web.mesh', headers: {} },
  { method: 'GET', path: '/api/items?page=2', host: (p) => `WEB.mesh:${p}`, headers: { 'x-tenant': 'gold' } },
  { method: 'POST', path: '/public/form', host: () => 'a.web.mesh', headers: { 'x-tenant': 'platinum' } },
  { method: 'DELETE', path: '/public/x', host: () => 'other.mesh', headers: { 'x-tenant': 'bronze' } },
  { method: 'GET', path: '/files/key.secret', host: () => 'web.mesh', headers: {} },
  { method: 'PATCH', path: '/', host: (p) => `a.web.mesh:${p}`, headers: {} },
  { method: 'PUT', path: '/admin', host: () => 'elsewhere.example', headers: { 'x-tenant': 'gold' } },
];

function effectiveOf(scenario: Scenario, port: number): EffectiveAuthorization {
  const parsed = parseIstioText('authz.yaml', scenario.yaml.replaceAll('PORT', String(port)), ISTIO_KIND_HANDLERS);
  expect(parsed.diagnostics).toEqual([]);
  const { model, diagnostics } = buildAuthorizationModel(policyFromFiles(new Map([['authz.yaml', parsed]])).authorizationPolicies);
  expect(diagnostics).toEqual([]);
  return effectiveAuthorization(model, WORKLOAD, scenario.pruneByPort ? port : undefined);
}

function listener(name: string, port: number, dir: TempDir, effective: EffectiveAuthorization): object {
  const value = {
    name,
    address: { socket_address: { address: '127.0.0.1', port_value: port } },
    filter_chains: [
      {
        transport_socket: {
          name: 'envoy.transport_sockets.tls',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
            // No require_client_certificate: a caller without a certificate reaches RBAC and is judged there, unauthenticated.
            common_tls_context: {
              tls_certificates: [{ certificate_chain: { filename: `${dir.path}/server.pem` }, private_key: { filename: `${dir.path}/server.key` } }],
              validation_context: { trusted_ca: { filename: `${dir.path}/ca.pem` } },
            },
          },
        },
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': TypeUrl.HttpConnectionManager,
              stat_prefix: name,
              route_config: {
                name,
                virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, direct_response: { status: 200, body: { inline_string: 'served' } } }] }],
              },
              http_filters: [...rbacHttpFilters(effective, TD), { name: 'envoy.filters.http.router', typed_config: { '@type': TypeUrl.Router } }],
            },
          },
        ],
      },
    ],
  };
  // Checked against Envoy's .proto files (nested Anys included) before Envoy sees it.
  envoyApi.pack(TypeUrl.Listener, value);
  return value;
}

function send(port: number, caller: Caller, agent: Agent, variant: Variant, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: variant.method,
        path: variant.path,
        headers: { host: variant.host(port), ...variant.headers },
        agent,
        ca,
        // The TLS name stays fixed while the Host header varies: the test is about what RBAC does with :authority.
        servername: 'web.mesh',
        ...(caller.certificate === undefined ? {} : { cert: caller.certificate.certPem, key: caller.certificate.keyPem }),
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.setTimeout(20_000, () => req.destroy(new Error(`timeout: ${variant.method} ${variant.path} on ${port}`)));
    req.on('error', reject);
    req.end();
  });
}

describe('RBAC filters in a real Envoy agree with Istio semantics', () => {
  let dir: TempDir;
  let envoy: StaticEnvoy;
  let ca: PemPair;
  const callers: Caller[] = [{ name: 'no certificate' }];
  const ports: number[] = [];
  const effectives: EffectiveAuthorization[] = [];

  beforeAll(async () => {
    dir = tempDir('meshbridge-rbac-');
    ca = await createCa({ trustDomain: TD });
    const server = await issueCertificate({ ca, usage: 'server', commonName: 'web', hosts: ['web.mesh', '127.0.0.1'] });
    dir.write('ca.pem', ca.certPem);
    dir.write('server.pem', server.certPem);
    dir.write('server.key', server.keyPem);
    for (const [ns, sa] of [['prod', 'frontend'], ['prod', 'intruder'], ['dev', 'frontend']] as const) {
      const spiffeId = `spiffe://${TD}/ns/${ns}/sa/${sa}`;
      callers.push({ name: spiffeId, certificate: await issueCertificate({ ca, usage: 'client', commonName: sa, spiffeId }) });
    }
    const listeners: object[] = [];
    for (const [index, scenario] of SCENARIOS.entries()) {
      const port = await freePort();
      ports.push(port);
      effectives.push(effectiveOf(scenario, port));
      listeners.push(listener(`scenario_${index}`, port, dir, effectives[index]!));
    }
    envoy = await StaticEnvoy.start({
      admin: { address: { socket_address: { address: '127.0.0.1', port_value: 0 } } },
      static_resources: { listeners },
    });
  }, 90_000);

  afterAll(async () => {
    await envoy?.remove();
    dir?.remove();
  });

  it.each(SCENARIOS.map((s, i) => [s.name, i] as const))('%s', async (_name, index) => {
    const port = ports[index]!;
    const outcomes = new Set<string>();
    const disagreements: string[] = [];
    for (const caller of callers) {
      // One connection per caller: the principal belongs to the connection, requests on it are judged one by one.
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        for (const variant of VARIANTS) {
          const modelRequest: AuthzRequest = {
            ...(caller.certificate === undefined ? {} : { principal: caller.name }),
            port,
            host: variant.host(port),
            method: variant.method,
            path: variant.path.split('?')[0]!,
            headers: variant.headers,
          };
          const expected = decide(effectives[index]!, modelRequest, TD);
          const reply = await send(port, caller, agent, variant, ca.certPem);
          const got = reply.status === 200 && reply.body === 'served' ? 'allow' : reply.status === 403 ? 'deny' : `status ${reply.status}`;
          outcomes.add(got);
          if (got !== expected) disagreements.push(`${caller.name} ${variant.method} ${variant.host(port)}${variant.path} ${JSON.stringify(variant.headers)}: model ${expected}, Envoy ${got}`);
        }
      } finally {
        agent.destroy();
      }
    }
    expect(disagreements).toEqual([]);
    // Every scenario but deny-all both allows and denies something, so agreement is not agreement on a constant.
    expect([...outcomes].sort()).toEqual(SCENARIOS[index]!.name.includes('denies everything') ? ['deny'] : ['allow', 'deny']);
  }, 120_000);

  it('Envoy counts what each filter denied, under its own prefix', async () => {
    const intruder = callers.find((c) => c.name.endsWith('/sa/intruder'))!;
    const agent = new Agent({ keepAlive: false });
    try {
      expect((await send(ports[0]!, intruder, agent, VARIANTS[0]!, ca.certPem)).status).toBe(403);
      expect((await send(ports[3]!, callers[0]!, agent, VARIANTS[0]!, ca.certPem)).status).toBe(403);
    } finally {
      agent.destroy();
    }
    const stats = await envoy.stats();
    expect(stats.get('http.scenario_0.rbac.istio_deny.denied')).toBeGreaterThan(0);
    expect(stats.get('http.scenario_3.rbac.istio_allow.denied')).toBeGreaterThan(0);
  });
});
