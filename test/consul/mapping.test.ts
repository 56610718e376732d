import { describe, expect, it } from 'vitest';
import type { ConsulHealthCheck, ConsulServiceEntry } from '../../src/registries/consul/consul-types.js';
import {
  aggregateChecks,
  choosePort,
  consulHostname,
  instanceAddress,
  instanceHealth,
  instanceLabels,
  isPlainService,
  mapService,
} from '../../src/registries/consul/mapping.js';
import type { ConsulMappingOptions } from '../../src/registries/consul/mapping.js';
import { RequestPacer, backoffDelay, nextIndex } from '../../src/registries/consul/blocking.js';

/** Fluent fixture: an instance as `/v1/health/service/<name>` returns it. */
class Instance {
  private entry: {
    Node: { Node: string; Address: string; TaggedAddresses?: Record<string, string>; Meta?: Record<string, string> };
    Service: {
      ID: string;
      Service: string;
      Kind?: string;
      Address: string;
      Port: number;
      Tags: string[];
      Meta: Record<string, string>;
      TaggedAddresses?: Record<string, { Address: string; Port: number }>;
      Weights?: { Passing: number; Warning: number };
    };
    Checks: { -readonly [K in keyof ConsulHealthCheck]: ConsulHealthCheck[K] }[];
  };

  constructor(id: string, port = 8080) {
    this.entry = {
      Node: { Node: 'node-1', Address: '10.0.0.1' },
      Service: { ID: id, Service: 'web', Address: '', Port: port, Tags: [], Meta: {} },
      Checks: [{ Node: 'node-1', CheckID: 'serfHealth', Status: 'passing', ServiceID: '' }],
    };
  }

  static of(id: string, port?: number): Instance {
    return new Instance(id, port);
  }

  node(name: string, address: string, meta: Record<string, string> = {}): this {
    this.entry.Node = { ...this.entry.Node, Node: name, Address: address, Meta: meta };
    for (const c of this.entry.Checks) c.Node = name;
    return this;
  }

  address(address: string): this {
    this.entry.Service.Address = address;
    return this;
  }

  kind(kind: string): this {
    this.entry.Service.Kind = kind;
    return this;
  }

  tags(...tags: string[]): this {
    this.entry.Service.Tags = tags;
    return this;
  }

  meta(meta: Record<string, string>): this {
    this.entry.Service.Meta = meta;
    return this;
  }

  weights(passing: number, warning: number): this {
    this.entry.Service.Weights = { Passing: passing, Warning: warning };
    return this;
  }

  nodeTagged(tagged: Record<string, string>): this {
    this.entry.Node.TaggedAddresses = tagged;
    return this;
  }

  serviceTagged(tagged: Record<string, { Address: string; Port: number }>): this {
    this.entry.Service.TaggedAddresses = tagged;
    return this;
  }

  check(checkId: string, status: string, serviceId = this.entry.Service.ID): this {
    this.entry.Checks.push({ Node: this.entry.Node.Node, CheckID: checkId, Status: status, ServiceID: serviceId });
    return this;
  }

  serf(status: string): this {
    this.entry.Checks[0]!.Status = status;
    return this;
  }

  build(): ConsulServiceEntry {
    return structuredClone(this.entry);
  }
}

const OPTIONS: ConsulMappingOptions = {
  registry: 'consul',
  datacenter: 'dc1',
  localDatacenter: 'dc1',
  domain: 'consul',
  defaultProtocol: 'TCP',
  warning: 'weight',
  servicePort: 'lowest',
  namespace: 'default',
};

describe('health aggregation', () => {
  const cases: { name: string; instance: Instance; warning?: 'weight' | 'degraded'; want: { health: string; weight: number } }[] = [
    { name: 'no service checks, serf passing', instance: Instance.of('a'), want: { health: 'HEALTHY', weight: 1 } },
    { name: 'passing uses Weights.Passing', instance: Instance.of('a').weights(5, 2).check('c', 'passing'), want: { health: 'HEALTHY', weight: 5 } },
    { name: 'warning is HEALTHY at Weights.Warning', instance: Instance.of('a').weights(5, 2).check('c', 'warning'), want: { health: 'HEALTHY', weight: 2 } },
    {
      name: 'warning can be mapped to DEGRADED',
      instance: Instance.of('a').weights(5, 2).check('c', 'warning'),
      warning: 'degraded',
      want: { health: 'DEGRADED', weight: 5 },
    },
    { name: 'Weights.Warning 0 is clamped to 1', instance: Instance.of('a').weights(5, 0).check('c', 'warning'), want: { health: 'HEALTHY', weight: 1 } },
    { name: 'a critical service check', instance: Instance.of('a').check('c', 'passing').check('d', 'critical'), want: { health: 'UNHEALTHY', weight: 1 } },
    { name: 'serfHealth critical (node checks count)', instance: Instance.of('a').check('c', 'passing').serf('critical'), want: { health: 'UNHEALTHY', weight: 1 } },
    { name: 'node maintenance', instance: Instance.of('a').check('_node_maintenance', 'critical', ''), want: { health: 'UNHEALTHY', weight: 1 } },
    { name: 'service maintenance', instance: Instance.of('a').check('_service_maintenance:a', 'critical'), want: { health: 'UNHEALTHY', weight: 1 } },
    { name: 'an unknown status counts as critical', instance: Instance.of('a').check('c', 'bogus'), want: { health: 'UNHEALTHY', weight: 1 } },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(instanceHealth(c.instance.build(), c.warning ?? 'weight')).toEqual(c.want);
    });
  }

  it('maintenance beats critical beats warning', () => {
    expect(aggregateChecks([])).toBe('passing');
    const check = (CheckID: string, Status: string) => ({ Node: 'n', CheckID, Status });
    expect(aggregateChecks([check('a', 'warning'), check('b', 'passing')])).toBe('warning');
    expect(aggregateChecks([check('a', 'warning'), check('b', 'critical')])).toBe('critical');
    expect(aggregateChecks([check('_node_maintenance', 'critical'), check('b', 'critical')])).toBe('maintenance');
  });
});

describe('address selection', () => {
  const cases: { name: string; instance: Instance; tagged?: string; want: { address: string; port: number } }[] = [
    { name: 'Service.Address empty: Node.Address', instance: Instance.of('a'), want: { address: '10.0.0.1', port: 8080 } },
    { name: 'Service.Address set', instance: Instance.of('a').address('10.9.9.9'), want: { address: '10.9.9.9', port: 8080 } },
    { name: 'IPv6 service address', instance: Instance.of('a').address('2001:db8::7'), want: { address: '2001:db8::7', port: 8080 } },
    { name: 'bracketed IPv6 is unbracketed', instance: Instance.of('a').address('[2001:db8::7]'), want: { address: '2001:db8::7', port: 8080 } },
    {
      name: 'service tagged address wins, with its port',
      instance: Instance.of('a').serviceTagged({ wan_ipv4: { Address: '203.0.113.5', Port: 443 } }),
      tagged: 'wan',
      want: { address: '203.0.113.5', port: 443 },
    },
    {
      name: 'node tagged address spelled lan_ipv4 answers "lan"',
      instance: Instance.of('a').nodeTagged({ lan_ipv4: '10.1.1.1' }),
      tagged: 'lan',
      want: { address: '10.1.1.1', port: 8080 },
    },
    {
      name: 'node tagged address spelled lan answers "lan_ipv4"',
      instance: Instance.of('a').nodeTagged({ lan: '10.1.1.2' }),
      tagged: 'lan_ipv4',
      want: { address: '10.1.1.2', port: 8080 },
    },
    {
      name: 'IPv6 tagged address',
      instance: Instance.of('a').nodeTagged({ lan_ipv6: '[fd00::1]' }),
      tagged: 'lan_ipv6',
      want: { address: 'fd00::1', port: 8080 },
    },
    {
      name: 'missing tagged address falls back to the service, then node address',
      instance: Instance.of('a'),
      tagged: 'wan',
      want: { address: '10.0.0.1', port: 8080 },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(instanceAddress(c.instance.build(), c.tagged)).toEqual(c.want);
    });
  }
});

describe('labels, kinds, ports and names', () => {
  it('takes key=value tags and meta as labels; meta wins', () => {
    const entry = Instance.of('a').tags('version=v2', 'canary', 'team=a').meta({ team: 'b', protocol: 'grpc' }).build();
    expect(instanceLabels(entry)).toEqual({ version: 'v2', team: 'b', protocol: 'grpc' });
  });

  it('skips mesh machinery kinds', () => {
    expect(isPlainService('')).toBe(true);
    expect(isPlainService(undefined)).toBe(true);
    for (const kind of ['connect-proxy', 'mesh-gateway', 'terminating-gateway', 'ingress-gateway', 'api-gateway']) {
      expect(isPlainService(kind)).toBe(false);
    }
  });

  it('chooses the shared port, else the lowest or the most common', () => {
    expect(choosePort([8080, 8080], 'lowest')).toBe(8080);
    expect(choosePort([9000, 8080, 9000], 'lowest')).toBe(8080);
    expect(choosePort([9000, 8080, 9000], 'most-common')).toBe(9000);
    expect(choosePort([9000, 8080], 'most-common')).toBe(8080);
    expect(choosePort([], 'lowest')).toBeUndefined();
  });

  it('names services <name>.service[.<dc>].<domain>', () => {
    expect(consulHostname('Web', 'dc1', 'dc1', 'consul')).toBe('web.service.consul');
    expect(consulHostname('web', 'dc2', 'dc1', 'consul')).toBe('web.service.dc2.consul');
    expect(consulHostname('web', 'dc1', 'dc1', 'corp.internal')).toBe('web.service.corp.internal');
  });
});

describe('mapService', () => {
  it('builds one port, keeps every instance port, and the locality from dc and node meta zone', () => {
    const { service, diagnostics } = mapService(
      'web',
      [
        Instance.of('b', 9090).node('n2', '10.0.0.2', { zone: 'z2' }).meta({ protocol: 'grpc' }).build(),
        Instance.of('a', 8080).node('n1', '10.0.0.1', { zone: 'z1' }).meta({ protocol: 'GRPC' }).tags('version=v1').build(),
      ],
      OPTIONS,
    );
    expect(diagnostics).toEqual([]);
    expect(service!.hostname).toBe('web.service.consul');
    expect(service!.ports).toEqual([{ number: 8080, name: 'grpc', protocol: 'GRPC', protocolFrom: 'declared by its instances (meta or tag protocol)' }]);
    expect(service!.endpoints.map((e) => [e.address, e.ports, e.locality.zone, e.locality.region])).toEqual([
      ['10.0.0.1', { grpc: 8080 }, 'z1', 'dc1'],
      ['10.0.0.2', { grpc: 9090 }, 'z2', 'dc1'],
    ]);
  });

  it('uses the default protocol when no instance declares one, and a protocol=... tag when one does', () => {
    expect(mapService('web', [Instance.of('a').build()], OPTIONS).service!.ports[0]!.protocol).toBe('TCP');
    expect(mapService('web', [Instance.of('a').build()], { ...OPTIONS, defaultProtocol: 'HTTP' }).service!.ports[0]!.name).toBe('http');
    expect(mapService('web', [Instance.of('a').tags('protocol=http2').build()], OPTIONS).service!.ports[0]!.protocol).toBe('HTTP2');
  });

  it('marks a protocol nobody declared, so proxyless clients get the port as gRPC, unless defaultProtocol was set (issue 11, defect 12)', () => {
    const { defaultProtocol: _unset, ...unconfigured } = OPTIONS;
    expect(mapService('web', [Instance.of('a').build()], unconfigured).service!.ports[0]).toEqual({
      number: 8080,
      name: 'tcp',
      protocol: 'TCP',
      protocolFrom: 'not declared (no protocol meta or tag, no defaultProtocol): TCP for Envoy, gRPC for clients that dial it by name',
      protocolUndeclared: true,
    });
    expect(mapService('web', [Instance.of('a').build()], OPTIONS).service!.ports[0]).toEqual({
      number: 8080,
      name: 'tcp',
      protocol: 'TCP',
      protocolFrom: 'defaultProtocol of registry consul',
    });
    expect(mapService('web', [Instance.of('a').meta({ protocol: 'tcp' }).build()], unconfigured).service!.ports[0]).not.toHaveProperty('protocolUndeclared');
  });

  it('reports an unknown protocol and instances that disagree', () => {
    const { service, diagnostics } = mapService(
      'web',
      [
        Instance.of('a').meta({ protocol: 'grpc' }).build(),
        Instance.of('b').node('n2', '10.0.0.2').meta({ protocol: 'grpc' }).build(),
        Instance.of('c').node('n3', '10.0.0.3').meta({ protocol: 'http' }).build(),
        Instance.of('d').node('n4', '10.0.0.4').meta({ protocol: 'smtp' }).build(),
      ],
      OPTIONS,
    );
    expect(service!.ports[0]!.protocol).toBe('GRPC');
    expect(diagnostics.map((d) => d.message)).toEqual([
      expect.stringContaining('unknown protocol "smtp"'),
      expect.stringContaining('instances declare different protocols (GRPC, HTTP); using GRPC'),
    ]);
  });

  it('skips proxies and gateways, and instances whose address is a DNS name or port is 0', () => {
    const { service, diagnostics } = mapService(
      'web',
      [
        Instance.of('proxy').kind('connect-proxy').build(),
        Instance.of('gw').kind('mesh-gateway').build(),
        Instance.of('dns').address('web.example.com').build(),
        Instance.of('noport', 0).node('n5', '10.0.0.5').build(),
        Instance.of('ok').node('n6', '10.0.0.6').build(),
      ],
      OPTIONS,
    );
    expect(service!.endpoints.map((e) => e.address)).toEqual(['10.0.0.6']);
    expect(diagnostics.map((d) => d.field)).toEqual(['services.web.instances.n5/noport', 'services.web.instances.node-1/dns']);
  });

  it('has no service when nothing is usable', () => {
    expect(mapService('web', [Instance.of('proxy').kind('connect-proxy').build()], OPTIONS).service).toBeUndefined();
    expect(mapService('web', [], OPTIONS).service).toBeUndefined();
  });

  it('names a service of another datacenter with the datacenter', () => {
    const { service } = mapService('web', [Instance.of('a').build()], { ...OPTIONS, datacenter: 'dc2' });
    expect(service!.hostname).toBe('web.service.dc2.consul');
    expect(service!.endpoints[0]!.locality.region).toBe('dc2');
  });
});

describe('blocking query index rules', () => {
  const cases: { name: string; previous: number; header: string | undefined; want: { next: number; reset: boolean } }[] = [
    { name: 'first answer', previous: 0, header: '42', want: { next: 42, reset: false } },
    { name: 'moves forward', previous: 42, header: '50', want: { next: 50, reset: false } },
    { name: 'unchanged (wait ran out)', previous: 42, header: '42', want: { next: 42, reset: false } },
    { name: 'goes backwards: reset to 0', previous: 42, header: '7', want: { next: 0, reset: true } },
    { name: 'an index of 0 is never used as is', previous: 42, header: '0', want: { next: 1, reset: false } },
    { name: 'a missing header is never used as is', previous: 42, header: undefined, want: { next: 1, reset: false } },
    { name: 'garbage is never used as is', previous: 0, header: 'abc', want: { next: 1, reset: false } },
    { name: 'an index beyond 2^53 is not trusted', previous: 0, header: '99999999999999999999', want: { next: 1, reset: false } },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(nextIndex(c.previous, c.header)).toEqual(c.want);
    });
  }

  it('spaces requests at least minInterval apart', () => {
    let now = 1_000;
    const pacer = new RequestPacer(100, () => now);
    expect(pacer.delay()).toBe(0);
    pacer.started();
    now += 30;
    expect(pacer.delay()).toBe(70);
    now += 100;
    expect(pacer.delay()).toBe(0);
  });

  it('backs off exponentially with jitter, capped', () => {
    expect(backoffDelay(0, 250, 30_000, () => 0)).toBe(125);
    expect(backoffDelay(0, 250, 30_000, () => 1)).toBe(250);
    expect(backoffDelay(3, 250, 30_000, () => 0.5)).toBe(1_500);
    expect(backoffDelay(20, 250, 30_000, () => 1)).toBe(30_000);
    expect(backoffDelay(20, 250, 30_000, () => 0)).toBe(15_000);
  });
});

describe('workload identity', () => {
  const identities = (instances: Instance[], options: Partial<ConsulMappingOptions> = {}) => {
    const { service, diagnostics } = mapService('Web', instances.map((i) => i.build()), { ...OPTIONS, ...options });
    return { identities: service!.endpoints.map((e) => e.identity), diagnostics: diagnostics.map((d) => `${d.field}: ${d.message}`) };
  };

  it('is the service name, lower-cased, in the configured namespace', () => {
    expect(identities([Instance.of('a')], { namespace: 'payments' })).toEqual({
      identities: [{ namespace: 'payments', serviceAccount: 'web' }],
      diagnostics: [],
    });
  });

  it('meta service-account overrides it for that instance alone', () => {
    const result = identities([Instance.of('a').meta({ 'service-account': 'web-admin' }), Instance.of('b').node('node-2', '10.0.0.2')]);
    expect(result.identities).toEqual([
      { namespace: 'default', serviceAccount: 'web-admin' },
      { namespace: 'default', serviceAccount: 'web' },
    ]);
  });

  it('a bad override gives that instance no identity (never the broader service one), reported once', () => {
    const bad = { 'service-account': 'Web/../admin' };
    const result = identities([Instance.of('a').meta(bad), Instance.of('b').meta(bad).node('node-2', '10.0.0.2')]);
    expect(result.identities).toEqual([undefined, undefined]);
    expect(result.diagnostics).toEqual([
      'services.Web.instances.node-1/a.meta.service-account: service-account: service account "Web/../admin" is not a DNS subdomain ' +
        '(lower-case letters, digits, dashes, dots; at most 253); the instance gets no identity',
    ]);
  });

  it('a service name that cannot be a service account gives no identity and says how to set one', () => {
    const { service, diagnostics } = mapService('web_v2', [Instance.of('a').build()], OPTIONS);
    expect(service!.endpoints[0]!.identity).toBeUndefined();
    expect(diagnostics.map((d) => d.message)).toEqual([
      'service account "web_v2" is not a DNS subdomain (lower-case letters, digits, dashes, dots; at most 253); set service-account to give the instance an identity',
    ]);
    expect(mapService('web_v2', [Instance.of('a').meta({ 'service-account': 'web-v2' }).build()], OPTIONS).service!.endpoints[0]!.identity)
      .toEqual({ namespace: 'default', serviceAccount: 'web-v2' });
  });
});
