import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsulAgent } from '../harness/consul.js';
import type { ConsulAgent } from '../harness/consul.js';
import { AdsEdsClient } from '../helpers/ads-client.js';
import { DaemonProcess } from '../helpers/daemon-process.js';
import type { LogLine } from '../helpers/daemon-process.js';
import { tempDir } from '../helpers/tmp.js';
import { boundedAll, catalogRegister } from './consul-api.js';

const SERVICES = 2_000;
const NODES = 20;
/** The test's own requests stay far below Consul's 200 connections per client IP. */
const REGISTER_CONCURRENCY = 16;

const serviceName = (i: number) => `svc-${String(i).padStart(4, '0')}`;
const servicePort = (i: number) => 20_000 + i;

/** ESTABLISHED TCP connections from process `pid` to `port` on loopback, read from /proc. */
function connectionsTo(pid: number, port: number): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m) inodes.add(m[1]!);
    } catch {
      // The descriptor closed while we looked.
    }
  }
  let count = 0;
  for (const table of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const remotePort = parseInt(cols[2]!.split(':')[1]!, 16);
      if (cols[3] === '01' && remotePort === port && inodes.has(cols[9]!)) count++;
    }
  }
  return count;
}

/** Counts connections every 100 ms while running; `max` is the most seen at once. */
class ConnectionSampler {
  max = 0;
  last = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(pid: number, port: number) {
    this.timer = setInterval(() => {
      try {
        this.last = connectionsTo(pid, port);
        this.max = Math.max(this.max, this.last);
      } catch {
        // The process is gone.
      }
    }, 100);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

describe('2,000 Consul services against a default agent', () => {
  const dir = tempDir('meshbridge-consul-scale-');
  let agent: ConsulAgent;
  const daemons: DaemonProcess[] = [];

  const startDaemon = async (): Promise<{ daemon: DaemonProcess; pid: number; xdsPort: number }> => {
    const daemon = new DaemonProcess(['run', '--config', join(dir.path, 'meshbridge.yaml')]);
    daemons.push(daemon);
    const xdsPort = await daemon.xdsPort();
    const pid = daemon.logs.find((l) => typeof l['pid'] === 'number')!['pid'] as number;
    return { daemon, pid, xdsPort };
  };
  const catalogSize = (l: LogLine) => (l.msg === 'catalog updated' ? Number(l['services']) : -1);

  beforeAll(async () => {
    // Consul's defaults, including limits.http_max_conns_per_client = 200.
    agent = await startConsulAgent({ logLevel: 'INFO' });
    dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
registries:
  - { kind: consul, name: dc1, address: '${agent.httpAddress}' }
`,
    );
  });

  afterAll(async () => {
    for (const d of daemons) await d.stop();
    await agent?.dispose();
    dir.remove();
  });

  it('sees 2,000 services registered live, without 429s, holding a bounded number of connections', async () => {
    const { daemon, pid, xdsPort } = await startDaemon();
    await daemon.waitForLog((l) => catalogSize(l) >= 1, 10_000); // the `consul` service itself
    const sampler = new ConnectionSampler(pid, agent.httpPort);

    const started = performance.now();
    const indexes = Array.from({ length: SERVICES }, (_, i) => i);
    let rejected = 0;
    await boundedAll(indexes, REGISTER_CONCURRENCY, async (i) => {
      const node = `vm-${String(i % NODES).padStart(2, '0')}`;
      const response = await catalogRegister(agent, {
        Node: node,
        Address: `127.0.10.${(i % NODES) + 1}`,
        NodeMeta: { zone: `zone-${(i % NODES) % 3}` },
        Service: { ID: `${serviceName(i)}-1`, Service: serviceName(i), Port: servicePort(i), Tags: [`version=v${i % 2}`] },
        Check: { CheckID: `${serviceName(i)}-check`, Name: 'alive', Status: 'passing', ServiceID: `${serviceName(i)}-1` },
      });
      if (response.status === 429) rejected++;
    });
    const registeredMs = performance.now() - started;
    await daemon.waitForLog((l) => catalogSize(l) >= SERVICES + 1, 60_000);
    const appearedMs = performance.now() - started;
    // Let any sweep finish, then read the steady number.
    await new Promise((r) => setTimeout(r, 2_000));
    sampler.stop();

    const ads = new AdsEdsClient(`127.0.0.1:${xdsPort}`);
    try {
      const sample = [0, 1, 777, 1_234, SERVICES - 1];
      ads.subscribe(...sample.map((i) => `outbound|${servicePort(i)}||${serviceName(i)}.service.consul`));
      for (const i of sample) {
        await ads.until(`outbound|${servicePort(i)}||${serviceName(i)}.service.consul`, (endpoints) =>
          expect(endpoints).toEqual([
            {
              address: `127.0.10.${(i % NODES) + 1}`,
              port: servicePort(i),
              health: 'HEALTHY',
              weight: 1,
              locality: { region: 'dc1', zone: `zone-${(i % NODES) % 3}` },
            },
          ]),
        );
      }
    } finally {
      ads.close();
    }

    console.log(
      `[consul] ${SERVICES} services registered in ${registeredMs.toFixed(0)} ms (${REGISTER_CONCURRENCY} at a time); ` +
        `all in the daemon's catalog ${appearedMs.toFixed(0)} ms after the first registration; ` +
        `daemon connections to the agent: max ${sampler.max}, steady ${sampler.last}`,
    );
    expect(rejected).toBe(0);
    expect(daemon.logs.filter((l) => l['code'] === 'MB_CONSUL_RATE_LIMITED' || l['status'] === 429)).toEqual([]);
    expect(daemon.logs.filter((l) => String(l.msg).startsWith('consul registry stale'))).toEqual([]);
    // Two blocking queries plus the read pool (8), whatever the number of services.
    expect(sampler.max).toBeLessThanOrEqual(11);
    expect(sampler.last).toBeGreaterThan(0);
    await daemon.stop();
  }, 120_000);

  it('reads 2,000 existing services in full at startup', async () => {
    const started = performance.now();
    const { daemon, pid } = await startDaemon();
    const sampler = new ConnectionSampler(pid, agent.httpPort);
    const read = await daemon.waitForLog((l) => l.msg === 'consul datacenter read in full', 60_000);
    const readMs = performance.now() - started;
    await daemon.waitForLog((l) => catalogSize(l) >= SERVICES + 1, 10_000);
    sampler.stop();
    console.log(
      `[consul] a fresh daemon read ${String(read['services'])} services in full ${readMs.toFixed(0)} ms after it was spawned; ` +
        `max connections ${sampler.max}`,
    );
    expect(read['services']).toBe(SERVICES + 1);
    expect(sampler.max).toBeLessThanOrEqual(11);
    await daemon.stop();
  }, 90_000);
});
