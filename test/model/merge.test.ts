import { describe, expect, it } from 'vitest';
import { findService } from '../../src/model/catalog.js';
import { mergeCatalog } from '../../src/model/merge.js';
import { registryState, service } from '../helpers/fixtures.js';

describe('mergeCatalog', () => {
  const cases = [
    {
      name: 'sorts services by hostname and endpoints by address',
      states: [registryState('a', [service('b.mesh').port(80).endpoint('10.0.0.2').endpoint('10.0.0.1').build(), service('a.mesh').port(80).build()])],
      hosts: ['a.mesh', 'b.mesh'],
      endpoints: { 'b.mesh': ['10.0.0.1', '10.0.0.2'] },
      conflicts: [],
    },
    {
      name: 'merges the same hostname from two registries, deduplicating by address and port',
      states: [
        registryState('consul', [service('x.mesh', 'consul').port(80).endpoint('10.0.0.1').endpoint('10.0.0.2').build()]),
        registryState('eureka', [service('x.mesh', 'eureka').port(80).endpoint('10.0.0.2').endpoint('10.0.0.3').build()]),
      ],
      hosts: ['x.mesh'],
      endpoints: { 'x.mesh': ['10.0.0.1', '10.0.0.2', '10.0.0.3'] },
      conflicts: [],
    },
    {
      name: 'keeps two endpoints on one address with different ports',
      states: [
        registryState('a', [service('x.mesh').port(80).endpoint('10.0.0.1', { ports: { http: 8001 } }).build()]),
        registryState('b', [service('x.mesh').port(80).endpoint('10.0.0.1', { ports: { http: 8002 } }).build()]),
      ],
      hosts: ['x.mesh'],
      endpoints: { 'x.mesh': ['10.0.0.1', '10.0.0.1'] },
      conflicts: [],
    },
    {
      name: 'reports a protocol disagreement and keeps the first registry\'s port',
      states: [
        registryState('first', [service('x.mesh').port(80, 'HTTP', 'web').build()]),
        registryState('second', [service('x.mesh').port(80, 'TCP', 'web').build()]),
      ],
      hosts: ['x.mesh'],
      endpoints: { 'x.mesh': [] },
      conflicts: ['port 80 is HTTP "web" in first but TCP "web" in second; keeping HTTP "web"'],
    },
    {
      name: 'reports one port name used for two numbers',
      states: [
        registryState('first', [service('x.mesh').port(80, 'HTTP', 'web').build()]),
        registryState('second', [service('x.mesh').port(81, 'HTTP', 'web').build()]),
      ],
      hosts: ['x.mesh'],
      endpoints: { 'x.mesh': [] },
      conflicts: ['port name "web" is port 80 in first but port 81 in second; keeping port 80'],
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const catalog = mergeCatalog(c.states);
      expect(catalog.services.map((s) => s.hostname)).toEqual(c.hosts);
      for (const [host, addresses] of Object.entries(c.endpoints)) {
        expect(findService(catalog, host)?.endpoints.map((e) => e.address)).toEqual(addresses);
      }
      expect(catalog.conflicts.map((x) => x.message)).toEqual(c.conflicts);
    });
  }

  it('returns a frozen catalog', () => {
    const catalog = mergeCatalog([registryState('a', [service('a.mesh').port(80).build()])]);
    expect(Object.isFrozen(catalog)).toBe(true);
    expect(Object.isFrozen(catalog.services)).toBe(true);
    expect(Object.isFrozen(catalog.services[0])).toBe(true);
  });

  it('finds services by binary search', () => {
    const hosts = Array.from({ length: 50 }, (_, i) => `svc-${String(i).padStart(2, '0')}.mesh`);
    const catalog = mergeCatalog([registryState('a', hosts.map((h) => service(h).port(80).build()))]);
    for (const h of hosts) expect(findService(catalog, h)?.hostname).toBe(h);
    expect(findService(catalog, 'missing.mesh')).toBeUndefined();
  });
});

describe('mergeCatalog with the previous catalog', () => {
  it('hands back the previous object of a service that did not change, even from new registry objects, and a new one for a service that did', () => {
    const states = (second: string) => [
      registryState('a', [service('x.mesh').port(80).endpoint('10.0.0.1').build(), service('y.mesh').port(80).endpoint(second).build()]),
    ];
    const first = mergeCatalog(states('10.0.0.2'));
    const same = mergeCatalog(states('10.0.0.2'), first);
    expect(same.services[0]).toBe(first.services[0]);
    expect(same.services[1]).toBe(first.services[1]);
    const moved = mergeCatalog(states('10.0.0.3'), first);
    expect(moved.services[0]).toBe(first.services[0]);
    expect(moved.services[1]).not.toBe(first.services[1]);
    expect(moved.services[1]!.endpoints.map((e) => e.address)).toEqual(['10.0.0.3']);
    expect(Object.isFrozen(moved.services[1])).toBe(true);
    expect(Object.isFrozen(moved.services[1]!.endpoints)).toBe(true);
  });

  it('a service that moved to another registry, or changed a label, is new', () => {
    const first = mergeCatalog([registryState('a', [service('x.mesh', 'a').port(80).endpoint('10.0.0.1').build()])]);
    const elsewhere = mergeCatalog([registryState('b', [service('x.mesh', 'b').port(80).endpoint('10.0.0.1').build()])], first);
    expect(elsewhere.services[0]).not.toBe(first.services[0]);
    const labelled = mergeCatalog([registryState('a', [service('x.mesh', 'a').port(80).endpoint('10.0.0.1', { labels: { v: '2' } }).build()])], first);
    expect(labelled.services[0]).not.toBe(first.services[0]);
  });
});
