import { Writable } from 'node:stream';
import type { Subscription } from 'rxjs';
import { createLogger } from '../../src/log.js';
import type { RegistryState } from '../../src/model/registry-state.js';
import type { Endpoint, Service } from '../../src/model/service.js';
import { ConsulRegistry } from '../../src/registries/consul/consul-registry.js';
import type { ConsulRegistryConfig } from '../../src/registries/consul/consul-registry.js';
import { eventually } from '../helpers/eventually.js';

export type RegistryOverrides = Partial<Omit<ConsulRegistryConfig, 'tuning'>> & { tuning?: Partial<ConsulRegistryConfig['tuning']> };

/** A ConsulRegistry in the test process, with its states and JSON log lines recorded. */
export class RegistryFixture {
  readonly states: RegistryState[] = [];
  readonly logs: Record<string, unknown>[] = [];
  readonly logText: string[] = [];
  readonly registry: ConsulRegistry;
  private subscription: Subscription | undefined;

  constructor(address: string, overrides: RegistryOverrides = {}, env: NodeJS.ProcessEnv = {}) {
    const sink = new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        for (const line of chunk.toString('utf8').split('\n')) {
          if (line === '') continue;
          this.logText.push(line);
          this.logs.push(JSON.parse(line) as Record<string, unknown>);
        }
        done();
      },
    });
    const { tuning, ...rest } = overrides;
    this.registry = new ConsulRegistry(
      {
        name: 'consul',
        address,
        domain: 'consul',
        services: {},
        defaultProtocol: 'TCP',
        warning: 'weight',
        servicePort: 'lowest',
        initialSyncTimeoutMs: 5_000,
        requestTimeoutMs: 5_000,
        ...rest,
        tuning: {
          waitSeconds: 30,
          concurrency: 4,
          minIntervalMs: 50,
          sweepMinIntervalMs: 500,
          backoff: { initialMs: 100, maxMs: 1_000 },
          ...tuning,
        },
      },
      createLogger('debug', sink),
      { resolvePath: (p) => p, env },
    );
  }

  async start(): Promise<void> {
    this.subscription = this.registry.states.subscribe((s) => this.states.push(s));
    await this.registry.start();
  }

  async stop(): Promise<void> {
    await this.registry.stop();
    this.subscription?.unsubscribe();
  }

  get latest(): RegistryState | undefined {
    return this.states[this.states.length - 1];
  }

  service(hostname: string): Service | undefined {
    return this.latest?.services.find((s) => s.hostname === hostname);
  }

  /** Waits until the latest state satisfies `check` (which throws until it does). */
  async until<T>(check: (state: RegistryState) => T, timeoutMs = 10_000): Promise<T> {
    return eventually(() => {
      const state = this.latest;
      if (state === undefined) throw new Error('no state yet');
      return check(state);
    }, timeoutMs, 20);
  }
}

export function byPort(service: Service | undefined): Endpoint[] {
  return [...(service?.endpoints ?? [])].sort((a, b) => Object.values(a.ports)[0]! - Object.values(b.ports)[0]!);
}
