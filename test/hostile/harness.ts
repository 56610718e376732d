import { join } from 'node:path';
import { expect } from 'vitest';
import { DaemonProcess } from '../helpers/daemon-process.js';
import { eventually } from '../helpers/eventually.js';
import { startStubConsul } from '../helpers/stub-consul.js';
import type { ConsulIntercept, StubConsul } from '../helpers/stub-consul.js';
import { tempDir } from '../helpers/tmp.js';
import type { TempDir } from '../helpers/tmp.js';
import { ReconnectingFollower } from './follower.js';

export const CONSUL_API = 'outbound|8080||api.service.consul';


/**
 * A real daemon under attack, watched from outside the way an operator would:
 * a well-behaved SotW client following every change, `/healthz` polled every
 * 100 ms with its latency recorded, and the daemon's resident memory sampled
 * from its own `/metrics`. Its registries: a file (the test changes it to
 * prove changes still flow) and a Consul stand-in that answers real shapes
 * until an attack is set.
 */
export class HostileHarness {
  readonly dir: TempDir = tempDir('meshbridge-hostile-');
  daemon!: DaemonProcess;
  good!: ReconnectingFollower;
  xds = '';
  admin = '';
  /** Every /healthz latency in ms, and failures as Infinity. */
  readonly health: number[] = [];
  readonly rssBytes: number[] = [];
  private consul: StubConsul | undefined;
  private pollers: NodeJS.Timeout[] = [];
  private changes = 0;

  /** `extraConfig` goes after the registries (more registries, top-level keys); `xdsConfig` inside `xds: {...}`. */
  async start(extraConfig = '', xdsConfig = ''): Promise<void> {
    this.consul = await startStubConsul({ nodeAddress: '127.0.0.1', blockMs: 500 });
    this.writeServices();
    const config = this.dir.write(
      'meshbridge.yaml',
      `xds: { listen: 127.0.0.1:0${xdsConfig === '' ? '' : `, ${xdsConfig}`} }
admin: { listen: 127.0.0.1:0 }
stateDir: ./state
batching: { debounceMs: 50, maxDelayMs: 200 }
registries:
  - { kind: file, name: local, paths: [./services.yaml] }
  - kind: consul
    name: dc1
    address: ${this.consul.url}
    localDatacenter: dc1
    backoff: { initialMs: 200, maxMs: 1000 }
${extraConfig}`,
    );
    this.daemon = new DaemonProcess(['run', '--config', config]);
    this.xds = `127.0.0.1:${await this.daemon.xdsPort()}`;
    this.admin = `http://127.0.0.1:${await this.daemon.adminPort()}`;
    await this.daemon.waitForLog((l) => l.msg === 'all registries synced', 20_000);
    this.good = new ReconnectingFollower(this.xds, 'sotw', 'good-client');
    await eventually(() => expect(this.good.latest?.clusters).toContain(CONSUL_API), 15_000);
    this.poll();
  }

  /** What the Consul stand-in does with each request instead of answering it well, until cleared. */
  setConsulAttack(attack: ConsulIntercept | undefined): void {
    this.consul!.intercept = attack;
  }

  /**
   * Adds a service to the file registry and returns how long the good client
   * took to see it (ms); fails past `withinMs`. Every answer it saw must still
   * hold Consul's cluster: an attack never withdraws what exists.
   */
  async change(withinMs = 2_000): Promise<number> {
    const name = `svc-${++this.changes}`;
    const started = Date.now();
    this.writeServices();
    await eventually(() => expect(this.good.latest?.clusters).toContain(`outbound|9000||${name}.mesh.local`), withinMs + 3_000, 20);
    const took = Date.now() - started;
    for (const answer of this.good.answers) expect(answer.clusters).toContain(CONSUL_API);
    return took;
  }

  /** Worst /healthz latency since `from` (an index into `health`). */
  worstHealth(from = 0): number {
    return Math.max(0, ...this.health.slice(from));
  }

  /** meshbridge_limit_hits_total for one limit, from the daemon's /metrics. */
  async limitHits(limit: string): Promise<number> {
    const text = await (await fetch(`${this.admin}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
    const match = new RegExp(`^meshbridge_limit_hits_total\\{limit="${limit.replace(/\./g, '\\.')}"\\} (\\d+)`, 'm').exec(text);
    return match === null ? Number.NaN : Number(match[1]);
  }

  /** Node ids of the streams /debug/syncz shows. */
  async connectedNodes(): Promise<string[]> {
    const body = (await (await fetch(`${this.admin}/debug/syncz`, { signal: AbortSignal.timeout(5_000) })).json()) as { proxies: { node: string }[] };
    return body.proxies.map((p) => p.node);
  }

  maxRss(from = 0): number {
    return Math.max(0, ...this.rssBytes.slice(from));
  }

  async stop(): Promise<void> {
    for (const timer of this.pollers) clearInterval(timer);
    this.good?.close();
    await this.daemon?.stop('SIGKILL');
    await this.consul?.close();
    this.dir.remove();
  }

  private writeServices(): void {
    const docs = ['base', ...Array.from({ length: this.changes }, (_, i) => `svc-${i + 1}`)].map(
      (name, i) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name} }
spec:
  hosts: [${name}.mesh.local]
  ports: [{ number: 9000, name: http }]
  endpoints: [{ address: 10.8.0.${i + 1} }]
`,
    );
    this.dir.write('services.yaml', docs.join('---\n'));
  }

  private poll(): void {
    let inFlight = false;
    this.pollers.push(
      setInterval(() => {
        if (inFlight) return;
        inFlight = true;
        const started = performance.now();
        fetch(`${this.admin}/healthz`, { signal: AbortSignal.timeout(5_000) })
          .then((r) => r.text())
          .then(() => this.health.push(performance.now() - started))
          .catch(() => this.health.push(Number.POSITIVE_INFINITY))
          .finally(() => (inFlight = false));
      }, 100),
      setInterval(() => {
        fetch(`${this.admin}/metrics`, { signal: AbortSignal.timeout(5_000) })
          .then((r) => r.text())
          .then((text) => {
            const match = /^process_resident_memory_bytes (\d+)/m.exec(text);
            if (match) this.rssBytes.push(Number(match[1]));
          })
          .catch(() => undefined);
      }, 250),
    );
  }
}

export const stateDirOf = (harness: HostileHarness) => join(harness.dir.path, 'state');
