import { describe, expect, it } from 'vitest';
import { parseApplications, parseInstance, parsePort, parseStatus } from '../../src/registries/eureka/eureka-json.js';
import type { EurekaInstance } from '../../src/registries/eureka/eureka-json.js';
import { InstanceMirror, reconcileHashCode } from '../../src/registries/eureka/instance-mirror.js';
import { TLS_LABEL } from '../../src/model/service.js';
import { choosePort, eurekaHealth, mapInstances } from '../../src/registries/eureka/mapping.js';
import type { EurekaMappingOptions } from '../../src/registries/eureka/mapping.js';
import { fixture } from './stub-eureka.js';

const OPTIONS: EurekaMappingOptions = { registry: 'spring', region: '', defaultProtocol: 'HTTP', servicePort: 'lowest', namespace: 'default' };

const parse = (name: string) => parseApplications(fixture(name));
const byId = (instances: readonly EurekaInstance[], id: string) => {
  const found = instances.find((i) => i.id === id);
  if (found === undefined) throw new Error(`no instance ${id}`);
  return found;
};

describe('parsing captured Eureka responses', () => {
  it.each([
    ['apps-full.json', 4, 'UP_4_'],
    ['apps-out-of-service.json', 4, 'OUT_OF_SERVICE_1_UP_3_'],
    ['apps-after-delete.json', 3, 'UP_3_'],
    ['apps-empty.json', 0, ''],
    ['apps-js-client.json', 2, 'UP_2_'],
    ['apps-compact.json', 1, 'UP_1_'],
    ['apps-edge-cases.json', 6, 'DOWN_1_STARTING_1_UNKNOWN_1_UP_3_'],
    ['legacy-apps-full.json', 4, 'OUT_OF_SERVICE_1_UP_3_'],
    ['legacy-apps-single-app.json', 1, 'UP_1_'],
    ['legacy-apps-empty.json', 0, ''],
  ])('%s: %i instances whose reconcile hash is the server\'s own (%s)', (name, count, hash) => {
    const apps = parse(name);
    expect(apps.problems).toEqual([]);
    expect(apps.instances).toHaveLength(count);
    expect(apps.hashCode).toBe(hash);
    expect(reconcileHashCode(apps.instances)).toBe(hash);
  });

  it('reads the legacy codec: a lone application and instance as objects, "$" as a string, @enabled as a boolean, overriddenstatus', () => {
    const [beta] = parse('legacy-apps-single-app.json').instances;
    expect(beta).toMatchObject({ app: 'BETA', id: 'beta-1:9090', ipAddr: '192.0.2.21', status: 'UP', overriddenStatus: 'UNKNOWN' });
    expect(beta!.port).toEqual({ port: 9090, enabled: true });
    expect(beta!.securePort).toEqual({ port: 443, enabled: false });
    expect(parse('legacy-apps-empty.json').instances).toEqual([]);
  });

  it('reads the single-application and single-instance endpoints in both codecs', () => {
    expect(parse('app-single-instance.json').instances.map((i) => i.id)).toEqual(['beta-1:9090']);
    expect(parse('legacy-app-single-instance.json').instances.map((i) => i.id)).toEqual(['beta-1:9090']);
    const gamma = parse('instance-secure-metadata.json').instances[0]!;
    expect(gamma).toMatchObject({ app: 'GAMMA', id: 'gamma-1:8443' });
    expect(gamma.securePort).toEqual({ port: 8443, enabled: true });
    expect(gamma.port).toEqual({ port: 8080, enabled: false });
  });

  it('reads overriddenStatus (current codec) and overriddenstatus (legacy) alike', () => {
    const current = byId(parse('apps-delta-modified-only.json').instances, 'alpha-2:8080');
    expect(current).toMatchObject({ status: 'OUT_OF_SERVICE', overriddenStatus: 'OUT_OF_SERVICE' });
    const legacy = parse('legacy-apps-full.json').instances.filter((i) => i.status === 'OUT_OF_SERVICE');
    expect(legacy).toHaveLength(1);
    expect(legacy[0]!.overriddenStatus).toBe('OUT_OF_SERVICE');
  });

  it('drops the EmptyMap @class marker from metadata and keeps real entries', () => {
    expect(byId(parse('apps-full.json').instances, 'beta-1:9090').metadata).toEqual({});
    expect(parse('app-metadata-updated.json').instances[0]!.metadata).toEqual({ weight: '5', canary: 'true' });
  });

  it('keys an instance without instanceId by its hostName, as InstanceInfo.getId() does', () => {
    const noid = parse('apps-edge-cases.json').instances.find((i) => i.app === 'NOID')!;
    expect(noid.id).toBe('192.0.2.51');
  });

  it('reads the data center metadata of an AmazonInfo instance', () => {
    const aws = byId(parse('apps-edge-cases.json').instances, 'i-0abc');
    expect(aws.dataCenterName).toBe('Amazon');
    expect(aws.dataCenterMetadata['availability-zone']).toBe('us-east-1a');
  });

  it.each([
    ['current codec', { $: 8080, '@enabled': 'true' }, true, { port: 8080, enabled: true }],
    ['legacy codec', { '@enabled': true, $: '8080' }, true, { port: 8080, enabled: true }],
    ['disabled as a string', { $: 8080, '@enabled': 'false' }, true, { port: 8080, enabled: false }],
    ['no @enabled on a plain port', { $: 8080 }, true, { port: 8080, enabled: true }],
    ['no @enabled on a secure port', { $: 8443 }, false, { port: 8443, enabled: false }],
    ['a bare number', 8080, true, { port: 8080, enabled: true }],
    ['a string that is no number', { $: 'http' }, true, undefined],
  ])('port: %s', (_name, raw, enabledByDefault, expected) => {
    expect(parsePort(raw, enabledByDefault)).toEqual(expected);
  });

  it.each([
    ['UP', 'UP'],
    ['up', 'UP'],
    ['OUT_OF_SERVICE', 'OUT_OF_SERVICE'],
    ['SICK', 'UNKNOWN'],
    [undefined, 'UNKNOWN'],
    [42, 'UNKNOWN'],
  ])('status %s reads as %s', (raw, expected) => {
    expect(parseStatus(raw)).toBe(expected);
  });

  it('reports an instance with no identity instead of keeping it', () => {
    expect(parseInstance({ app: 'X', ipAddr: '192.0.2.1' }, 'X')).toContain('neither instanceId nor hostName');
    const apps = parseApplications({ applications: { application: { name: 'X', instance: [{ ipAddr: '192.0.2.1' }, 'junk'] } } });
    expect(apps.instances).toEqual([]);
    expect(apps.problems).toHaveLength(2);
  });

  it('rejects a body that is no Eureka response', () => {
    expect(() => parseApplications({ error: 'Not Found' })).toThrow(/not a Eureka response/);
    expect(() => parseApplications(null)).toThrow(/not a Eureka response/);
  });
});

describe('applying deltas', () => {
  it('ADDED and MODIFIED replace by instance id, DELETED removes, and the hash then matches the server', () => {
    const mirror = new InstanceMirror();
    mirror.replaceAll(parse('apps-full.json').instances);
    const delta = parse('apps-delta-after-delete.json');
    expect(mirror.applyDelta(delta.instances)).toBe(true);
    expect(mirror.reconcileHashCode()).toBe(delta.hashCode);
    const after = parse('apps-after-delete.json').instances;
    expect(mirror.instances().map((i) => `${i.app}/${i.id}`).sort()).toEqual(after.map((i) => `${i.app}/${i.id}`).sort());
    expect(byId(mirror.instances(), 'beta-1:9090').metadata).toEqual({ canary: 'true', weight: '5' });
  });

  it('a MODIFIED status change alone', () => {
    // Captured from a server holding ALPHA (2) and BETA (1).
    const mirror = new InstanceMirror();
    mirror.replaceAll(parse('apps-full.json').instances.filter((i) => i.app !== 'GAMMA'));
    const delta = parse('apps-delta-modified-only.json');
    mirror.applyDelta(delta.instances);
    expect(byId(mirror.instances(), 'alpha-2:8080').status).toBe('OUT_OF_SERVICE');
    expect(mirror.reconcileHashCode()).toBe('OUT_OF_SERVICE_1_UP_2_');
    expect(mirror.reconcileHashCode()).toBe(delta.hashCode);
  });

  it('an app whose only instance is DELETED disappears', () => {
    const mirror = new InstanceMirror();
    const alpha2oos = parse('apps-delta-modified-only.json').instances[0]!;
    const beta = { ...byId(parse('apps-full.json').instances, 'beta-1:9090'), actionType: 'ADDED' as const };
    mirror.replaceAll([alpha2oos, beta, byId(parse('apps-full.json').instances, 'alpha-1:8080')]);
    const delta = parse('apps-delta-deleted-and-added.json');
    mirror.applyDelta(delta.instances);
    expect(mirror.instances().map((i) => i.app).sort()).toEqual(['ALPHA', 'ALPHA', 'DELTA']);
    expect(mirror.reconcileHashCode()).toBe(delta.hashCode);
  });

  it('a delta against a stale copy leaves a hash that differs from the server', () => {
    const mirror = new InstanceMirror();
    mirror.replaceAll(parse('apps-full.json').instances.filter((i) => i.app === 'ALPHA'));
    const delta = parse('apps-delta-modified-only.json');
    mirror.applyDelta(delta.instances);
    expect(mirror.reconcileHashCode()).toBe('OUT_OF_SERVICE_1_UP_1_');
    expect(mirror.reconcileHashCode()).not.toBe(delta.hashCode);
  });

  it('an empty delta changes nothing; a full fetch of the same content is no change', () => {
    const mirror = new InstanceMirror();
    mirror.replaceAll(parse('apps-full.json').instances);
    const version = mirror.version;
    expect(mirror.applyDelta(parse('apps-delta-empty.json').instances)).toBe(false);
    expect(mirror.replaceAll(parse('apps-full.json').instances)).toBe(false);
    expect(mirror.version).toBe(version);
  });
});

describe('mapping instances to services', () => {
  const map = (name: string, options: Partial<EurekaMappingOptions> = {}) => mapInstances(parse(name).instances, { ...OPTIONS, ...options });

  it('one service per lower-cased VIP, the instances\' port, UP as HEALTHY', () => {
    const { services, diagnostics } = map('apps-full.json');
    expect(diagnostics).toEqual([]);
    expect(services.map((s) => s.hostname)).toEqual(['alpha', 'beta', 'gamma']);
    const alpha = services[0]!;
    expect(alpha.ports).toEqual([{ number: 8080, name: 'http', protocol: 'HTTP' }]);
    expect(alpha.endpoints.map((e) => [e.address, e.ports, e.health])).toEqual([
      ['192.0.2.11', { http: 8080 }, 'HEALTHY'],
      ['192.0.2.12', { http: 8080 }, 'HEALTHY'],
    ]);
    expect(alpha.registries).toEqual(['spring']);
  });

  it('the secure port when enabled, marked TLS, with metadata as labels, zone, weight and protocol', () => {
    const gamma = map('apps-full.json').services.find((s) => s.hostname === 'gamma')!;
    expect(gamma.ports).toEqual([{ number: 8443, name: 'grpc', protocol: 'GRPC' }]);
    const [endpoint] = gamma.endpoints;
    expect(endpoint).toMatchObject({
      address: '192.0.2.31',
      ports: { grpc: 8443 },
      locality: { region: '', zone: 'zone-a', subzone: '' },
      weight: 10,
      health: 'HEALTHY',
    });
    expect(endpoint!.labels).toEqual({ 'mesh.protocol': 'grpc', zone: 'zone-a', weight: '10', version: '1.2.3', [TLS_LABEL]: 'true' });
  });

  it('a secure port with no declared protocol is HTTPS', () => {
    const instance = { ...parse('instance-secure-metadata.json').instances[0]!, metadata: {} };
    expect(mapInstances([instance], OPTIONS).services[0]!.ports).toEqual([{ number: 8443, name: 'https', protocol: 'HTTPS' }]);
  });

  it('OUT_OF_SERVICE is DRAINING', () => {
    const alpha = map('apps-out-of-service.json').services.find((s) => s.hostname === 'alpha')!;
    expect(alpha.endpoints.map((e) => e.health).sort()).toEqual(['DRAINING', 'HEALTHY']);
  });

  it.each([
    ['UP', 'HEALTHY'],
    ['OUT_OF_SERVICE', 'DRAINING'],
    ['DOWN', 'UNHEALTHY'],
    ['STARTING', 'UNHEALTHY'],
    ['UNKNOWN', 'UNHEALTHY'],
  ] as const)('%s -> %s', (status, health) => {
    expect(eurekaHealth(status)).toBe(health);
  });

  it('edge cases: no instanceId, IPv6, AWS zone, comma-separated VIPs, DNS-name ipAddr and no enabled port skipped with warnings', () => {
    const { services, diagnostics } = map('apps-edge-cases.json', { domain: 'eureka.local' });
    expect(services.map((s) => s.hostname)).toEqual([
      'aws-alias.eureka.local',
      'aws-svc.eureka.local',
      'noid.eureka.local',
      'odd.eureka.local',
      'six.eureka.local',
    ]);
    const host = (h: string) => services.find((s) => s.hostname === h)!;
    expect(host('noid.eureka.local').endpoints.map((e) => e.address)).toEqual(['192.0.2.51']);
    expect(host('six.eureka.local').endpoints[0]).toMatchObject({ address: '2001:db8::61', ports: { grpc: 8080 } });
    expect(host('six.eureka.local').ports[0]!.protocol).toBe('GRPC');
    for (const h of ['aws-svc.eureka.local', 'aws-alias.eureka.local']) {
      expect(host(h).endpoints[0]).toMatchObject({ address: '198.51.100.7', health: 'UNHEALTHY', locality: { zone: 'us-east-1a' } });
    }
    // odd-1 has a DNS name for an address, odd-2 no enabled port: only odd-3 (UNKNOWN) remains.
    expect(host('odd.eureka.local').endpoints.map((e) => [e.address, e.health])).toEqual([['192.0.2.73', 'UNHEALTHY']]);
    expect(diagnostics.map((d) => `${d.field}: ${d.message}`)).toEqual([
      'ODD/odd-1.ipAddr: "odd-1.test.internal" is not an IP address (nor is hostName "odd-1.test.internal"); instance skipped',
      'ODD/odd-2.port: neither port nor securePort is enabled; instance skipped',
    ]);
    expect(diagnostics.every((d) => d.severity === 'warning' && d.source === 'eureka:spring')).toBe(true);
  });

  it('falls back to the app name without a VIP, and brackets around IPv6 go', () => {
    const base = parse('apps-js-client.json').instances[0]!;
    const { services } = mapInstances([{ ...base, vipAddress: undefined, ipAddr: '[::1]' }], OPTIONS);
    expect(services[0]!.hostname).toBe('jsapp');
    expect(services[0]!.endpoints[0]!.address).toBe('::1');
  });

  it('instances on different ports: the lowest (or most common) is the service port, each endpoint keeps its own', () => {
    const base = parse('apps-js-client.json').instances[0]!;
    const at = (id: string, ip: string, port: number) => ({ ...base, id, ipAddr: ip, port: { port, enabled: true } });
    const instances = [at('a', '192.0.2.1', 9000), at('b', '192.0.2.2', 9000), at('c', '192.0.2.3', 8000)];
    const lowest = mapInstances(instances, OPTIONS).services[0]!;
    expect(lowest.ports[0]!.number).toBe(8000);
    expect(lowest.endpoints.map((e) => e.ports['http'])).toEqual([9000, 9000, 8000]);
    expect(mapInstances(instances, { ...OPTIONS, servicePort: 'most-common' }).services[0]!.ports[0]!.number).toBe(9000);
    expect(choosePort([], 'lowest')).toBeUndefined();
  });

  it('unknown protocol, bad weight and unparseable status are reported and defaulted', () => {
    const base = parse('apps-js-client.json').instances[0]!;
    const odd = { ...base, status: 'UNKNOWN' as const, rawStatus: 'SICK', metadata: { protocol: 'carrier-pigeon', weight: '0' } };
    const { services, diagnostics } = mapInstances([odd], OPTIONS);
    expect(services[0]!.ports[0]!.protocol).toBe('HTTP');
    expect(services[0]!.endpoints[0]).toMatchObject({ weight: 1, health: 'UNHEALTHY' });
    expect(diagnostics.map((d) => d.field)).toEqual(['JSAPP/jsapp-js:3000.metadata.protocol', 'JSAPP/jsapp-js:3000.status', 'JSAPP/jsapp-js:3000.metadata.weight']);
  });

  it('two instances on the same address and port: the first by id is kept and the other reported', () => {
    const base = parse('apps-js-client.json').instances[0]!;
    const { services, diagnostics } = mapInstances([{ ...base, id: 'b' }, { ...base, id: 'a', metadata: { version: 'v1' } }], OPTIONS);
    expect(services[0]!.endpoints).toHaveLength(1);
    expect(services[0]!.endpoints[0]!.labels).toEqual({ version: 'v1' });
    expect(diagnostics[0]!.field).toBe('JSAPP/b');
  });
});

describe('workload identity', () => {
  const base = () => parse('apps-js-client.json').instances[0]!;

  it('is the app name, lower-cased, in the configured namespace; metadata service-account overrides it', () => {
    const plain = { ...base(), id: 'a', ipAddr: '192.0.2.1' };
    const named = { ...base(), id: 'b', ipAddr: '192.0.2.2', metadata: { 'service-account': 'js-frontend' } };
    const { services, diagnostics } = mapInstances([plain, named], { ...OPTIONS, namespace: 'spring' });
    expect(services[0]!.endpoints.map((e) => [e.address, e.identity])).toEqual([
      ['192.0.2.1', { namespace: 'spring', serviceAccount: 'jsapp' }],
      ['192.0.2.2', { namespace: 'spring', serviceAccount: 'js-frontend' }],
    ]);
    expect(diagnostics).toEqual([]);
  });

  it('a bad override or app name gives no identity, reported once per app', () => {
    const bad = (id: string, ip: string) => ({ ...base(), id, ipAddr: ip, metadata: { 'service-account': 'x'.repeat(300) } });
    const underscored = { ...base(), app: 'MY_APP', vipAddress: 'myapp', id: 'c', ipAddr: '192.0.2.3' };
    const { services, diagnostics } = mapInstances([bad('a', '192.0.2.1'), bad('b', '192.0.2.2'), underscored], OPTIONS);
    expect(services.flatMap((s) => s.endpoints.map((e) => e.identity))).toEqual([undefined, undefined, undefined]);
    expect(diagnostics.map((d) => d.field)).toEqual(['JSAPP/a.metadata.service-account', 'MY_APP/c.metadata.service-account']);
    expect(diagnostics[0]!.message).toContain('the instance gets no identity');
    expect(diagnostics[0]!.message.length).toBeLessThan(300);
    expect(diagnostics[1]!.message).toContain('set service-account');
  });
});
