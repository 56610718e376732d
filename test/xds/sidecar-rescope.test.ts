import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/config.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { RawAdsClient } from '../helpers/ads-client.js';
import { RawDeltaClient } from '../helpers/delta-client.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { eventually, sleep } from '../helpers/eventually.js';
import { silentLogger } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';
import type { TempDir } from '../helpers/tmp.js';

/**
 * Which Sidecar selects a connected proxy is chosen again whenever the policy
 * changes: a real daemon (real XdsServer, file registry and policy files
 * watched on disk) and real gRPC streams that never reconnect.
 */

const hostOf = (i: number) => `svc-${i}.rescope.internal`;
const portOf = (i: number) => 9101 + i;
const ALL = [0, 1, 2, 3, 4, 5];
const clustersOf = (indexes: readonly number[]) => indexes.map((i) => `outbound|${portOf(i)}||${hostOf(i)}`).sort();
const listenersOf = (indexes: readonly number[]) => indexes.map((i) => `127.0.0.1_${portOf(i)}`).sort();

const SERVICES = ALL.map(
  (i) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: svc-${i} }
spec:
  hosts: [${hostOf(i)}]
  resolution: STATIC
  ports: [{ number: ${portOf(i)}, name: http, protocol: HTTP }]
  endpoints: [{ address: 10.0.0.${i + 1} }]
`,
).join('---\n');

function sidecar(name: string, namespace: string, hosts: readonly number[] | '*', selector?: Record<string, string>): string {
  const egress = hosts === '*' ? '"*/*"' : hosts.map((i) => `"*/${hostOf(i)}"`).join(', ');
  return `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: ${name}, namespace: ${namespace} }
spec:
${selector === undefined ? '' : `  workloadSelector: { labels: ${JSON.stringify(selector)} }\n`}  egress: [{ hosts: [${egress}] }]
`;
}

/** Node metadata as Istio writes it: NAMESPACE and a LABELS struct. */
function istioMetadata(labels: Record<string, string>, namespace = 'default'): object {
  return {
    fields: {
      NAMESPACE: { stringValue: namespace },
      LABELS: { structValue: { fields: Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, { stringValue: v }])) } },
    },
  };
}

interface Received {
  readonly typeUrl: string;
  readonly names: readonly string[];
  readonly removed: readonly string[];
}

/**
 * A client that follows its stream as a proxy would: it ACKs every response
 * and keeps what it holds per type (state of the world: CDS and LDS replaced
 * whole; delta: added, changed and removed by name), and every response it got.
 */
class Follower {
  readonly received: Received[] = [];
  private readonly held = new Map<string, Set<string>>();
  private closed = false;

  private constructor(
    private readonly sotw: RawAdsClient | undefined,
    private readonly delta: RawDeltaClient | undefined,
    readonly id: string,
  ) {}

  /** Subscribes to CDS and LDS (wildcard) and EDS for every service's cluster, as Envoy would once it has the clusters. */
  static connect(protocol: 'sotw' | 'delta', address: string, id: string, labels: Record<string, string>): Follower {
    const node = { id, user_agent_name: 'envoy', metadata: istioMetadata(labels) };
    const follower = protocol === 'sotw' ? new Follower(new RawAdsClient(address, node), undefined, id) : new Follower(undefined, new RawDeltaClient(address, node), id);
    follower.subscribeAll();
    void follower.follow();
    return follower;
  }

  private subscribeAll(): void {
    for (const typeUrl of [TypeUrl.Cluster, TypeUrl.Listener]) {
      this.sotw?.send({ type_url: typeUrl });
      this.delta?.send({ type_url: typeUrl, resource_names_subscribe: ['*'] });
    }
    this.sotw?.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names: clustersOf(ALL) });
    this.delta?.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names_subscribe: clustersOf(ALL) });
  }

  private async follow(): Promise<void> {
    while (!this.closed) {
      if (this.sotw !== undefined) {
        const response = await this.sotw.next(60_000).catch(() => undefined);
        if (response === undefined && this.sotw.ended) return;
        if (response === undefined) continue;
        const names = RawAdsClient.names(response);
        this.received.push({ typeUrl: response.type_url, names, removed: [] });
        const held = this.heldOf(response.type_url);
        if (response.type_url !== TypeUrl.ClusterLoadAssignment) held.clear();
        for (const name of names) held.add(name);
        this.sotw.send({
          type_url: response.type_url,
          version_info: response.version_info,
          response_nonce: response.nonce,
          resource_names: response.type_url === TypeUrl.ClusterLoadAssignment ? clustersOf(ALL) : [],
        });
      } else {
        const response = await this.delta!.next(60_000).catch(() => undefined);
        if (response === undefined && this.delta!.ended) return;
        if (response === undefined) continue;
        const names = RawDeltaClient.names(response);
        this.received.push({ typeUrl: response.type_url, names, removed: [...response.removed_resources] });
        const held = this.heldOf(response.type_url);
        for (const name of response.removed_resources) held.delete(name);
        for (const name of names) held.add(name);
        this.delta!.ack(response);
      }
    }
  }

  private heldOf(typeUrl: string): Set<string> {
    let held = this.held.get(typeUrl);
    if (held === undefined) this.held.set(typeUrl, (held = new Set()));
    return held;
  }

  holds(typeUrl: string): string[] {
    return [...this.heldOf(typeUrl)].sort();
  }

  /** Waits until the client holds exactly the clusters and listeners of `indexes` (and, over delta, their endpoints only). */
  async until(indexes: readonly number[], timeoutMs = 20_000): Promise<void> {
    await eventually(
      () => {
        expect(this.holds(TypeUrl.Cluster)).toEqual(clustersOf(indexes));
        expect(this.holds(TypeUrl.Listener)).toEqual(listenersOf(indexes));
        if (this.delta !== undefined) expect(this.holds(TypeUrl.ClusterLoadAssignment)).toEqual(clustersOf(indexes));
      },
      timeoutMs,
      20,
    );
  }

  close(): void {
    this.closed = true;
    this.sotw?.close();
    this.delta?.close();
  }
}

async function startDaemon(
  dir: TempDir,
  settings: { batching: { debounceMs: number; maxDelayMs: number }; access?: unknown[] },
  log: Logger = silentLogger,
): Promise<{ daemon: Daemon; xds: string }> {
  const { config, diagnostics } = parseConfig(
    {
      xds: { listen: '127.0.0.1:0' },
      admin: { listen: '127.0.0.1:0' },
      batching: settings.batching,
      ...(settings.access === undefined ? {} : { security: { access: settings.access } }),
      registries: [{ kind: 'file', name: 'local', paths: ['services.yaml'] }],
      policy: { paths: ['policy/*.yaml'] },
    },
    `${dir.path}/meshbridge.yaml`,
  );
  expect(diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
  const daemon = new Daemon(config!, log, { envoyApi });
  const { xdsPort } = await daemon.start();
  return { daemon, xds: `127.0.0.1:${xdsPort}` };
}

describe('a connected proxy follows the Sidecar that selects it now, without reconnecting', () => {
  const dir = tempDir('meshbridge-rescope-');
  let daemon: Daemon;
  let xds: string;
  const followers: Follower[] = [];
  const writePolicy = (file: string, content: string) => dir.write(join('policy', file), content);
  const deletePolicy = (file: string) => rmSync(join(dir.path, 'policy', file));
  const viewOf = (id: string) => daemon.connections().find((s) => s.node.id === id)?.node.view;
  let delta: Follower;
  let sotw: Follower;
  let narrow: Follower;
  let quiet: Follower;

  beforeAll(async () => {
    dir.write('services.yaml', SERVICES);
    mkdirSync(join(dir.path, 'policy'));
    // Selects none of the nodes below (another namespace): the policy is read, and narrows nothing.
    writePolicy('elsewhere.yaml', sidecar('elsewhere', 'other', [5]));
    ({ daemon, xds } = await startDaemon(dir, {
      batching: { debounceMs: 20, maxDelayMs: 100 },
      access: [{ nodes: ['narrow-*'], services: ['svc-[0-4].rescope.internal'] }],
    }));
    await daemon.ready();
    delta = Follower.connect('delta', xds, 'vm-delta', { app: 'shop' });
    sotw = Follower.connect('sotw', xds, 'vm-sotw', { app: 'shop', version: 'v2' });
    narrow = Follower.connect('delta', xds, 'narrow-1', { app: 'shop' });
    quiet = Follower.connect('sotw', xds, 'quiet-1', { app: 'quiet' });
    followers.push(delta, sotw, narrow, quiet);
  });

  afterAll(async () => {
    followers.forEach((f) => f.close());
    await daemon?.stop(1_000);
    dir.remove();
  });

  it('starts with everything its scope allows', async () => {
    await Promise.all([delta.until(ALL), sotw.until(ALL), quiet.until(ALL), narrow.until([0, 1, 2, 3, 4])]);
    expect(viewOf('vm-delta')).toBe('sidecar');
    expect(viewOf('narrow-1')).toBe('sidecar~access:0');
  });

  it('a Sidecar added for its labels narrows it: delta is told what left in removed_resources, SotW gets CDS and LDS whole', async () => {
    const before = delta.received.length;
    writePolicy('shop.yaml', sidecar('shop-vms', 'default', [0, 1], { app: 'shop' }));
    await Promise.all([delta.until([0, 1]), sotw.until([0, 1]), narrow.until([0, 1])]);
    expect(viewOf('vm-delta')).toBe('sidecar~sidecar:default/shop-vms');
    expect(viewOf('vm-sotw')).toBe('sidecar~sidecar:default/shop-vms');
    // The access rule still applies: it is per node id, and chosen again with the Sidecar.
    expect(viewOf('narrow-1')).toBe('sidecar~sidecar:default/shop-vms,access:0');
    const since = delta.received.slice(before);
    expect(since.filter((r) => r.typeUrl === TypeUrl.Cluster).flatMap((r) => r.removed).sort()).toEqual(clustersOf([2, 3, 4, 5]));
    expect(since.filter((r) => r.typeUrl === TypeUrl.ClusterLoadAssignment).flatMap((r) => r.removed).sort()).toEqual(clustersOf([2, 3, 4, 5]));
    // Nothing it already had is sent again.
    expect(since.flatMap((r) => r.names)).toEqual([]);
    // A node the Sidecar does not select keeps everything.
    expect(quiet.holds(TypeUrl.Cluster)).toEqual(clustersOf(ALL));
    expect(viewOf('quiet-1')).toBe('sidecar');
  });

  it('a namespace default added later narrows the nodes no selector picks, and not those one does', async () => {
    writePolicy('default.yaml', sidecar('default', 'default', [2, 3]));
    await quiet.until([2, 3]);
    expect(viewOf('quiet-1')).toBe('sidecar~sidecar:default/default');
    expect(delta.holds(TypeUrl.Cluster)).toEqual(clustersOf([0, 1]));
    expect(viewOf('vm-delta')).toBe('sidecar~sidecar:default/shop-vms');
  });

  it('when its Sidecar is deleted, it falls back to the namespace default', async () => {
    const before = sotw.received.length;
    deletePolicy('shop.yaml');
    await Promise.all([delta.until([2, 3]), sotw.until([2, 3]), narrow.until([2, 3])]);
    expect(viewOf('vm-sotw')).toBe('sidecar~sidecar:default/default');
    // Every stream is on a view being served, and the views they all left are no longer kept (nor rebuilt).
    for (const stream of daemon.connections()) expect(daemon.cache.peek(stream.node.view), stream.node.view).toBeDefined();
    expect(daemon.cache.views().filter((v) => v.includes('shop-vms'))).toEqual([]);
    // State of the world: the endpoints it subscribes to that the new view has, sent again since its CDS dropped them; nothing else of EDS.
    // (Each may come twice: a cluster sent anew has its endpoints answered again on the next EDS request, for Envoy's warming.)
    await eventually(() => {
      const endpoints = sotw.received.slice(before).filter((r) => r.typeUrl === TypeUrl.ClusterLoadAssignment).flatMap((r) => r.names);
      expect([...new Set(endpoints)].sort()).toEqual(clustersOf([2, 3]));
    }, 10_000);
  });

  it('then to the root namespace\'s default, then to everything', async () => {
    writePolicy('root.yaml', sidecar('mesh-default', 'istio-system', [4]));
    deletePolicy('default.yaml');
    await Promise.all([delta.until([4]), sotw.until([4]), quiet.until([4]), narrow.until([4])]);
    expect(viewOf('vm-delta')).toBe('sidecar~sidecar:istio-system/mesh-default');
    deletePolicy('root.yaml');
    await Promise.all([delta.until(ALL), sotw.until(ALL), quiet.until(ALL), narrow.until([0, 1, 2, 3, 4])]);
    expect(viewOf('vm-delta')).toBe('sidecar');
    expect(viewOf('narrow-1')).toBe('sidecar~access:0');
  });

  it('a move between two views with the same resources sends nothing', async () => {
    await quiet.until(ALL);
    await sleep(300);
    const before = quiet.received.length;
    writePolicy('quiet.yaml', sidecar('everything', 'default', '*', { app: 'quiet' }));
    await eventually(() => expect(viewOf('quiet-1')).toBe('sidecar~sidecar:default/everything'), 20_000);
    await sleep(500);
    expect(quiet.received.slice(before)).toEqual([]);
  });
});

describe('a proxy connected before the first policy was read', () => {
  const dir = tempDir('meshbridge-rescope-first-');
  let daemon: Daemon | undefined;
  let follower: Follower | undefined;

  afterAll(async () => {
    follower?.close();
    await daemon?.stop(1_000);
    dir.remove();
  });

  it('is narrowed by its Sidecar once the policy arrives, and is never sent the whole mesh', async () => {
    dir.write('services.yaml', SERVICES);
    mkdirSync(join(dir.path, 'policy'));
    dir.write(join('policy', 'shop.yaml'), sidecar('shop-vms', 'default', [0, 1], { app: 'shop' }));
    // The first catalog and policy wait for the debounce: the stream opens (the registry has synced) before they are applied.
    const started = await startDaemon(dir, { batching: { debounceMs: 2_000, maxDelayMs: 4_000 } });
    daemon = started.daemon;
    follower = Follower.connect('delta', started.xds, 'early-1', { app: 'shop' });
    await eventually(() => expect(daemon!.connections().find((s) => s.node.id === 'early-1')?.node.view).toBe('sidecar'), 10_000, 10);
    expect(daemon.readiness()).toMatchObject({ ready: false });
    await follower.until([0, 1]);
    expect(daemon.connections().find((s) => s.node.id === 'early-1')?.node.view).toBe('sidecar~sidecar:default/shop-vms');
    const clusters = follower.received.filter((r) => r.typeUrl === TypeUrl.Cluster).flatMap((r) => r.names);
    expect(clusters.sort()).toEqual(clustersOf([0, 1]));
  });
});

describe('moves are logged: each one while few move, a count when a fleet does', () => {
  const dir = tempDir('meshbridge-rescope-log-');
  const lines: { msg: string; [key: string]: unknown }[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as { msg: string }) });
  let daemon: Daemon | undefined;
  const followers: Follower[] = [];
  const FLEET = 25;

  afterAll(async () => {
    followers.forEach((f) => f.close());
    await daemon?.stop(1_000);
    dir.remove();
  });

  it('one line per stream, with its node and both views, for one stream; one line with the count for 25', async () => {
    dir.write('services.yaml', SERVICES);
    mkdirSync(join(dir.path, 'policy'));
    dir.write(join('policy', 'elsewhere.yaml'), sidecar('elsewhere', 'other', [5]));
    const started = await startDaemon(dir, { batching: { debounceMs: 20, maxDelayMs: 100 } }, log);
    daemon = started.daemon;
    await daemon.ready();
    const single = Follower.connect('delta', started.xds, 'single-1', { app: 'single' });
    followers.push(single);
    for (let i = 0; i < FLEET; i += 1) followers.push(Follower.connect('delta', started.xds, `fleet-${i}`, { app: 'fleet' }));
    await Promise.all(followers.map((f) => f.until(ALL)));

    dir.write(join('policy', 'single.yaml'), sidecar('single', 'default', [0], { app: 'single' }));
    await single.until([0]);
    const one = lines.filter((l) => l.msg === 'stream moved to the view its Sidecar now selects');
    expect(one).toHaveLength(1);
    expect(one[0]).toMatchObject({ node: 'single-1', from: 'sidecar', to: 'sidecar~sidecar:default/single' });

    dir.write(join('policy', 'fleet.yaml'), sidecar('fleet', 'default', [1, 2], { app: 'fleet' }));
    await Promise.all(followers.slice(1).map((f) => f.until([1, 2])));
    expect(lines.filter((l) => l.msg === 'stream moved to the view its Sidecar now selects')).toHaveLength(1);
    const fleet = lines.filter((l) => l.msg === 'streams moved to the views their Sidecars now select');
    expect(fleet).toHaveLength(1);
    expect(fleet[0]).toMatchObject({ streams: FLEET, pairs: 1, largest: [{ pair: 'sidecar -> sidecar~sidecar:default/fleet', streams: FLEET }] });
  });
});
