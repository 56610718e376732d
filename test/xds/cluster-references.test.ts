import { describe, expect, it } from 'vitest';
import type { Resource } from '../../src/xds/cache/snapshot.js';
import { ClusterReferences } from '../../src/xds/server/ordering.js';

const resource = (name: string, body: object): Resource =>
  ({ name, version: 'v', body, canonical: JSON.stringify(body), packed: { type_url: '', value: new Uint8Array() }, wire: { sotw: Buffer.alloc(0), delta: Buffer.alloc(0) } }) as Resource;

describe('ClusterReferences: what make-before-break must keep', () => {
  const references = new ClusterReferences();

  it('finds the clusters of route actions, weighted clusters and mirrors', () => {
    const route = resource('8080', {
      name: '8080',
      virtual_hosts: [
        {
          name: 'web',
          routes: [
            { match: { prefix: '/a' }, route: { cluster: 'outbound|8080||a', request_mirror_policies: [{ cluster: 'outbound|8080||shadow' }] } },
            { match: { prefix: '/' }, route: { weighted_clusters: { clusters: [{ name: 'outbound|8080|v1|web', weight: 80 }, { name: 'outbound|8080|v2|web', weight: 20 }] } } },
            { match: { prefix: '/r' }, redirect: { path_redirect: '/' } },
          ],
        },
      ],
    });
    expect([...references.of(route)].sort()).toEqual(['outbound|8080|v1|web', 'outbound|8080|v2|web', 'outbound|8080||a', 'outbound|8080||shadow'].sort());
    expect([...references.routesOf(route)]).toEqual([]);
  });

  it('finds the cluster of a TCP proxy and the route configuration of an HTTP listener', () => {
    const tcp = resource('127.0.0.1_5432', { filter_chains: [{ filters: [{ typed_config: { '@type': 'x.TcpProxy', stat_prefix: 's', cluster: 'outbound|5432||db' } }] }] });
    const http = resource('127.0.0.1_8080', { filter_chains: [{ filters: [{ typed_config: { '@type': 'x.HttpConnectionManager', rds: { route_config_name: '8080', config_source: { ads: {} } } } }] }] });
    expect([...references.of(tcp)]).toEqual(['outbound|5432||db']);
    expect([...references.of(http)]).toEqual([]);
    expect([...references.routesOf(http)]).toEqual(['8080']);
  });

  it('stops at a bounded depth instead of recursing without end', () => {
    let deep: Record<string, unknown> = { cluster: 'too-deep' };
    for (let i = 0; i < 200; i++) deep = { nested: deep };
    expect([...references.of(resource('deep', deep))]).toEqual([]);
  });
});
