import { readFile } from 'node:fs/promises';
import picomatch from 'picomatch';
import type { Logger } from 'pino';
import { BehaviorSubject, filter } from 'rxjs';
import type { Observable } from 'rxjs';
import { ConfigError, ConsulError } from '../../errors.js';
import type { RegistryState } from '../../model/registry-state.js';
import type { Protocol } from '../../model/service.js';
import type { Registry } from '../registry.js';
import { ConsulClient } from './consul-client.js';
import { DatacenterWatch } from './datacenter-watch.js';
import type { ServiceFilter, WatchTuning } from './datacenter-watch.js';
import type { ConsulMappingOptions, PortChoice, WarningMapping } from './mapping.js';

export interface ConsulRegistryConfig {
  readonly name: string;
  readonly address: string;
  readonly caFile?: string | undefined;
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
  /** Path of a file holding the ACL token; read again before every full read, so rotation works. */
  readonly tokenFile?: string | undefined;
  /** Name of an environment variable holding the ACL token. */
  readonly tokenEnv?: string | undefined;
  /** Datacenters to watch; the agent's own when absent. */
  readonly datacenters?: readonly string[] | undefined;
  /** The agent's datacenter, if known; otherwise asked from the agent. */
  readonly localDatacenter?: string | undefined;
  readonly domain: string;
  readonly services: {
    readonly names?: readonly string[] | undefined;
    readonly tags?: readonly string[] | undefined;
    readonly filter?: string | undefined;
  };
  readonly defaultProtocol?: Protocol | undefined;
  readonly warning: WarningMapping;
  readonly servicePort: PortChoice;
  readonly taggedAddress?: string | undefined;
  /** Namespace of the instances' identities; `default` when absent. */
  readonly namespace?: string | undefined;
  readonly initialSyncTimeoutMs: number;
  readonly requestTimeoutMs: number;
  /** Largest response body read (limits.registryResponseBytes); 64 MiB when left out. */
  readonly maxBodyBytes?: number | undefined;
  readonly tuning: WatchTuning;
}

/** Paths resolved against the config file's directory. */
export interface ConsulRegistryDeps {
  readonly resolvePath: (path: string) => string;
  readonly env: NodeJS.ProcessEnv;
  /** Told of every response refused for its size, for the metric. */
  readonly onBodyTooLarge?: (() => void) | undefined;
}

/**
 * Every service of one or more Consul datacenters, live, with Consul's health.
 * Emits whole states like every registry: unsynced until the first full read,
 * stale (with the last good services) while Consul cannot be read.
 */
export class ConsulRegistry implements Registry {
  readonly kind = 'consul' as const;
  readonly name: string;
  private readonly subject = new BehaviorSubject<RegistryState | undefined>(undefined);
  private readonly controller = new AbortController();
  private client: ConsulClient | undefined;
  private watches: DatacenterWatch[] = [];
  private running: Promise<void>[] = [];
  private token: string | undefined;
  private localDatacenter: string | undefined;
  private lastPublished = '';
  private initialTimer: NodeJS.Timeout | undefined;
  /**
   * True until the first full read of every datacenter succeeds or
   * initialSyncTimeoutMs passes: a failed request meanwhile (Consul still
   * starting, a slow first answer) publishes nothing, so the daemon does not
   * serve a catalog without Consul in it before the promised wait is over.
   */
  private holding = true;
  private warnedEmpty = false;

  constructor(
    private readonly config: ConsulRegistryConfig,
    private readonly log: Logger,
    private readonly deps: ConsulRegistryDeps = { resolvePath: (p) => p, env: process.env },
  ) {
    this.name = config.name;
  }

  get states(): Observable<RegistryState> {
    return this.subject.pipe(filter((s): s is RegistryState => s !== undefined));
  }

  /** The sockets the registry may hold to Consul: two blocking queries per datacenter plus the read pool of each. */
  get maxConnections(): number {
    return (this.config.datacenters?.length ?? 1) * (2 + this.config.tuning.concurrency) + 1;
  }

  /** The HTTP agent every request goes through (tests count its sockets). */
  get httpAgent(): ConsulClient['agent'] | undefined {
    return this.client?.agent;
  }

  async start(): Promise<void> {
    const { config } = this;
    const readPem = async (what: string, path: string | undefined) => {
      if (path === undefined) return undefined;
      try {
        return await readFile(this.deps.resolvePath(path), 'utf8');
      } catch (error) {
        throw new ConfigError(`registry ${config.name}: cannot read ${what} ${path}: ${(error as Error).message}`, { cause: error });
      }
    };
    this.client = new ConsulClient({
      address: config.address,
      ca: await readPem('caFile', config.caFile),
      cert: await readPem('certFile', config.certFile),
      key: await readPem('keyFile', config.keyFile),
      token: () => this.token,
      requestTimeoutMs: config.requestTimeoutMs,
      maxSockets: this.maxConnections,
      maxBodyBytes: config.maxBodyBytes ?? 64 * 1024 * 1024,
      onBodyTooLarge: this.deps.onBodyTooLarge,
    });
    if (config.tokenEnv !== undefined) this.token = this.deps.env[config.tokenEnv];

    const names = config.services.names;
    const matchers = names?.map((n) => picomatch(n));
    const serviceFilter: ServiceFilter = {
      names: matchers === undefined ? undefined : (name) => matchers.some((m) => m(name)),
      tags: config.services.tags,
      expression: config.services.filter,
    };
    const datacenters = config.datacenters ?? [undefined];
    this.watches = datacenters.map(
      (dc) =>
        new DatacenterWatch(
          dc,
          this.client!,
          () => this.mappingOptions(dc),
          serviceFilter,
          config.tuning,
          this.log,
          () => this.publish(),
          () => this.refreshToken(),
        ),
    );
    this.log.info(
      {
        address: config.address,
        datacenters: config.datacenters ?? '(the agent’s own)',
        tokenFrom: config.tokenFile !== undefined ? 'tokenFile' : config.tokenEnv !== undefined ? `env ${config.tokenEnv}` : 'none',
        maxConnections: this.maxConnections,
      },
      'watching consul',
    );

    let pending = this.watches.length;
    let resolveFirst!: () => void;
    const firstSyncs = new Promise<void>((resolve) => (resolveFirst = resolve));
    this.running = this.watches.map((watch) => {
      let reported = false;
      return watch.run(this.controller.signal, (outcome) => {
        if (reported || outcome === 'failed') return;
        reported = true;
        if (--pending === 0) resolveFirst();
      });
    });
    // A Consul that is down at startup must not hold the daemon back forever:
    // after the initial-sync timeout an unsynced, stale, empty state lets the
    // other registries serve (and the daemon's saved state stand in for this one).
    const timeout = new Promise<void>((resolve) => {
      this.initialTimer = setTimeout(resolve, config.initialSyncTimeoutMs);
    });
    await Promise.race([firstSyncs, timeout]);
    clearTimeout(this.initialTimer);
    this.holding = false;
    if (this.subject.value === undefined) this.publish(true);
  }

  async stop(): Promise<void> {
    clearTimeout(this.initialTimer);
    this.controller.abort();
    await Promise.all(this.running);
    this.client?.destroy();
    this.subject.complete();
  }

  private async refreshToken(): Promise<void> {
    if (this.config.tokenFile === undefined) return;
    try {
      this.token = (await readFile(this.deps.resolvePath(this.config.tokenFile), 'utf8')).trim();
    } catch (error) {
      throw new ConsulError('MB_CONFIG_UNREADABLE', `cannot read tokenFile ${this.config.tokenFile}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  private async mappingOptions(dc: string | undefined): Promise<ConsulMappingOptions> {
    const local = await this.resolveLocalDatacenter();
    return {
      registry: this.name,
      datacenter: dc ?? local,
      localDatacenter: local,
      domain: this.config.domain,
      defaultProtocol: this.config.defaultProtocol,
      warning: this.config.warning,
      servicePort: this.config.servicePort,
      taggedAddress: this.config.taggedAddress,
      namespace: this.config.namespace ?? 'default',
    };
  }

  /** The configured local datacenter, else the agent's (`/v1/agent/self`), else the nearest one Consul lists. */
  private async resolveLocalDatacenter(): Promise<string> {
    if (this.localDatacenter !== undefined) return this.localDatacenter;
    let dc = this.config.localDatacenter;
    if (dc === undefined) {
      try {
        dc = await this.client!.agentDatacenter();
      } catch (error) {
        if (!(error instanceof ConsulError) || error.code !== 'MB_CONSUL_ACL_DENIED') throw error;
        // A token without agent:read may still list datacenters; the agent's own comes first.
        dc = (await this.client!.datacenters())[0];
        if (dc === undefined) throw error;
      }
      this.log.info({ datacenter: dc }, 'consul agent datacenter');
    }
    this.localDatacenter = dc;
    return dc;
  }

  private publish(force = false): void {
    const synced = this.watches.length > 0 && this.watches.every((w) => w.synced);
    const stale = this.watches.some((w) => w.stale) || (force && !synced);
    if (!force && this.subject.value === undefined && (this.holding ? !synced : !synced && !stale)) return;
    const services = this.watches.flatMap((w) => w.services);
    const diagnostics = this.watches.flatMap((w) => w.diagnostics);
    const key = JSON.stringify([synced, stale, services, diagnostics.length]);
    if (key === this.lastPublished && this.subject.value !== undefined) return;
    this.lastPublished = key;
    if (synced && services.length === 0 && this.token === undefined && !this.warnedEmpty) {
      // Consul always lists at least its own `consul` service to a reader allowed to see it.
      this.warnedEmpty = true;
      this.log.warn('consul lists no services and no token is configured; with ACLs on, anonymous reads see nothing (set tokenFile or tokenEnv)');
    }
    const failures = this.watches.flatMap((w) => (w.lastFailure ? [w.lastFailure] : [])).sort((a, b) => b.at.getTime() - a.at.getTime());
    const syncTimes = this.watches.map((w) => w.lastSyncAt?.getTime());
    // The registry is as fresh as its stalest datacenter.
    const lastSyncAt = syncTimes.every((t) => t !== undefined) && syncTimes.length > 0 ? new Date(Math.min(...(syncTimes as number[]))) : undefined;
    this.subject.next({ registry: this.name, kind: this.kind, services, synced, stale, diagnostics, lastSyncAt, lastError: failures[0] });
  }
}
