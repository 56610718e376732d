import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { meshbridge } from './daemon-process.js';
import { eventually } from './eventually.js';
import { tempDir } from './tmp.js';
import type { TempDir } from './tmp.js';

/** The real Envoy 1.40 scripts/install-envoy.sh caches; scripts/test.sh exports its path. */
export function envoyBinary(): string {
  const bin = process.env.MESHBRIDGE_ENVOY_BIN;
  if (!bin || !existsSync(bin)) {
    throw new Error(`MESHBRIDGE_ENVOY_BIN is ${bin ? `"${bin}", which does not exist` : 'unset'}; run scripts/install-envoy.sh (npm test does)`);
  }
  return bin;
}

export interface EnvoyOptions {
  readonly xdsPort: number;
  readonly nodeId: string;
  /** Incremental xDS (`meshbridge bootstrap --envoy --delta`). */
  readonly delta?: boolean;
  /** What `--xds` says; 127.0.0.1:<xdsPort> unless given (e.g. localhost:<port>). */
  readonly xdsAddress?: string;
  /** `--locality region/zone/subzone`. */
  readonly locality?: string;
  /** More `--xds` addresses after the first: meshbridge replicas. */
  readonly moreXds?: readonly string[];
  /** `--label KEY=VALUE` each: node metadata LABELS, what a Sidecar selects. */
  readonly labels?: Readonly<Record<string, string>>;
}

export interface HttpReply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/**
 * A real Envoy started from `meshbridge bootstrap --envoy`, as a user starts it,
 * with a dynamic base id and its admin on a port it picks, so several can run at once.
 */
export class EnvoyProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<number | null> = Promise.resolve(null);
  private stderr = '';
  private adminAddress = '';
  /** When the current Envoy process was spawned (ms since the epoch). */
  launchedAt = 0;
  /** Access log lines: `<status> <response flags> <upstream cluster> <upstream host>`. */
  private readonly accessLogPath: string;
  readonly bootstrapPath: string;

  private constructor(
    private readonly dir: TempDir,
    readonly bootstrap: string,
  ) {
    this.bootstrapPath = dir.write('envoy.yaml', bootstrap);
    this.accessLogPath = `${dir.path}/access.log`;
  }

  static async start(options: EnvoyOptions): Promise<EnvoyProcess> {
    const args = ['bootstrap', '--envoy', '--node-id', options.nodeId, '--xds', options.xdsAddress ?? `127.0.0.1:${options.xdsPort}`, '--admin-port', '0'];
    if (options.delta) args.push('--delta');
    if (options.locality) args.push('--locality', options.locality);
    for (const address of options.moreXds ?? []) args.push('--xds', address);
    for (const [key, value] of Object.entries(options.labels ?? {})) args.push('--label', `${key}=${value}`);
    const { stdout, stderr, code } = await meshbridge(args);
    if (code !== 0) throw new Error(`meshbridge bootstrap failed (${code}): ${stderr}`);
    const envoy = new EnvoyProcess(tempDir('meshbridge-envoy-'), stdout);
    await envoy.launch();
    return envoy;
  }

  /** Starts (or starts again, after `stop`) Envoy on the same bootstrap. */
  async launch(): Promise<void> {
    const addressFile = `${this.dir.path}/admin-address-${Date.now()}`;
    this.stderr = '';
    this.launchedAt = Date.now();
    const child = spawn(
      envoyBinary(),
      ['-c', this.bootstrapPath, '--use-dynamic-base-id', '--admin-address-path', addressFile, '--concurrency', '1', '-l', 'warning', '--disable-hot-restart'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    this.child = child;
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      // Keep the tail only: Envoy under a test can log a lot.
      this.stderr = (this.stderr + chunk).slice(-64_000);
    });
    this.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    this.adminAddress = await eventually(() => {
      if (child.exitCode !== null) throw new Error(`Envoy exited with ${child.exitCode}:\n${this.stderr}`);
      const address = existsSync(addressFile) ? readFileSync(addressFile, 'utf8').trim() : '';
      if (!address) throw new Error(`Envoy wrote no admin address yet:\n${this.stderr}`);
      return address;
    }, 20_000);
  }

  get log(): string {
    return this.stderr;
  }

  async admin(path: string, method = 'GET'): Promise<string> {
    const reply = await httpRequest(`http://${this.adminAddress}${path}`, { method });
    if (reply.status !== 200) throw new Error(`Envoy admin ${path}: ${reply.status} ${reply.body}`);
    return reply.body;
  }

  /** Every counter and gauge, by name. */
  async stats(): Promise<Map<string, number>> {
    const text = await this.admin('/stats');
    const stats = new Map<string, number>();
    for (const line of text.split('\n')) {
      const match = /^([^:]+): (\d+)$/.exec(line);
      if (match) stats.set(match[1]!, Number(match[2]));
    }
    return stats;
  }

  /** Sum of the stats whose name ends with `suffix`. */
  async statSum(suffix: string): Promise<number> {
    let sum = 0;
    for (const [name, value] of await this.stats()) if (name.endsWith(suffix)) sum += value;
    return sum;
  }

  /** Envoy's own verdict on what meshbridge sent: every `*.update_rejected` counter that is not 0. */
  async rejectedUpdates(): Promise<Record<string, number>> {
    const rejected: Record<string, number> = {};
    for (const [name, value] of await this.stats()) if (name.endsWith('update_rejected') && value !== 0) rejected[name] = value;
    return rejected;
  }

  async configDump(resource?: string): Promise<ConfigDump> {
    return JSON.parse(await this.admin(`/config_dump?include_eds${resource ? `&resource=${resource}` : ''}`)) as ConfigDump;
  }

  /** Names of the active clusters, listeners and route configurations Envoy holds. */
  async activeNames(): Promise<{ clusters: string[]; listeners: string[]; routes: string[]; endpoints: Map<string, number> }> {
    const dump = await this.configDump();
    const clusters: string[] = [];
    const listeners: string[] = [];
    const routes: string[] = [];
    const endpoints = new Map<string, number>();
    for (const section of dump.configs) {
      const type = section['@type'] ?? '';
      if (type.endsWith('ClustersConfigDump')) {
        for (const c of section.dynamic_active_clusters ?? []) clusters.push(c.cluster.name);
      } else if (type.endsWith('ListenersConfigDump')) {
        for (const l of section.dynamic_listeners ?? []) if (l.active_state) listeners.push(l.name);
      } else if (type.endsWith('RoutesConfigDump')) {
        for (const r of section.dynamic_route_configs ?? []) routes.push(r.route_config.name);
      } else if (type.endsWith('EndpointsConfigDump')) {
        for (const e of section.dynamic_endpoint_configs ?? []) {
          const count = (e.endpoint_config.endpoints ?? []).reduce((n, l) => n + (l.lb_endpoints?.length ?? 0), 0);
          endpoints.set(e.endpoint_config.cluster_name, count);
        }
      }
    }
    return { clusters: clusters.sort(), listeners: listeners.sort(), routes: routes.sort(), endpoints };
  }

  /** Waits until Envoy holds config that satisfies `check`, which throws (an `expect`) until it does. */
  async waitForConfig(check: (names: Awaited<ReturnType<EnvoyProcess['activeNames']>>) => void, timeoutMs = 15_000): Promise<void> {
    try {
      await eventually(async () => check(await this.activeNames()), timeoutMs, 100);
    } catch (error) {
      // Say why Envoy does not have it, when Envoy knows: a rejected update and its log.
      const rejected = await this.rejectedUpdates().catch(() => ({}));
      if (Object.keys(rejected).length === 0) throw error;
      throw new Error(`Envoy rejected updates ${JSON.stringify(rejected)}; its log ends:\n${this.stderr.slice(-2_000)}`, { cause: error });
    }
  }

  /** Is the ADS stream to meshbridge up (Envoy's own gauge)? */
  async connected(): Promise<boolean> {
    return (await this.stats()).get('control_plane.connected_state') === 1;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }

  /** Stops Envoy and removes its files. */
  async remove(): Promise<void> {
    await this.stop();
    this.dir.remove();
  }
}

export interface ConfigDump {
  configs: {
    '@type'?: string;
    dynamic_active_clusters?: { cluster: { name: string } }[];
    dynamic_listeners?: { name: string; active_state?: unknown }[];
    dynamic_route_configs?: { route_config: { name: string } }[];
    dynamic_endpoint_configs?: { endpoint_config: { cluster_name: string; endpoints?: { lb_endpoints?: unknown[] }[] } }[];
  }[];
}

/** A port free on 127.0.0.1 right now, for a service port Envoy will listen on. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** One HTTP/1.1 request; no keep-alive, so each request is routed afresh. */
export function httpRequest(
  url: string,
  options: { method?: string; headers?: Record<string, string>; timeoutMs?: number; body?: string } = {},
): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: { connection: 'close', ...options.headers }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.setTimeout(options.timeoutMs ?? 10_000, () => req.destroy(new Error(`timeout after ${options.timeoutMs ?? 10_000} ms: ${url}`)));
    req.on('error', reject);
    req.end(options.body);
  });
}
