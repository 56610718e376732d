import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { ControlPlaneCredentials } from '../../src/agent/certificate-client.js';
import { DaemonProcess, meshbridge } from '../helpers/daemon-process.js';
import type { TempDir } from '../helpers/tmp.js';
import { EnvoyProcess } from './envoy-process.js';

/**
 * A meshbridge with TLS on its xDS port and the workload CA on, as a fleet
 * runs it: a control-plane CA, the server's certificate, one client
 * certificate per node, the config, and the daemon serving `dir`'s
 * `*.mesh.yaml` (registry) and `*.policy.yaml` (policy) files.
 */
export class SecureMesh {
  private constructor(
    readonly dir: TempDir,
    readonly daemon: DaemonProcess,
    readonly xds: string,
  ) {}

  static async start(dir: TempDir, options: { trustDomain: string; nodes: readonly string[]; workloadCa?: string }): Promise<SecureMesh> {
    expect((await meshbridge(['ca', 'create', '--dir', dir.path, '--trust-domain', options.trustDomain])).code).toBe(0);
    expect((await meshbridge(['ca', 'issue', '--dir', dir.path, '--server', 'localhost,127.0.0.1', '--out', `${dir.path}/server`])).code).toBe(0);
    for (const node of options.nodes) {
      expect((await meshbridge(['ca', 'issue', '--dir', dir.path, '--node', node, '--out', `${dir.path}/${node}`])).code).toBe(0);
    }
    dir.write(
      'meshbridge.yaml',
      `xds:
  listen: 127.0.0.1:0
  tls: { certFile: server.crt, keyFile: server.key, clientCaFile: ca.crt }
admin: { listen: 127.0.0.1:0 }
security:
  trustDomain: ${options.trustDomain}
  workloadCa: ${options.workloadCa ?? '{}'}
stateDir: ./state
batching: { debounceMs: 20, maxDelayMs: 100 }
registries:
  - { kind: file, name: local, paths: ['./*.mesh.yaml'] }
policy: { paths: ['./*.policy.yaml'] }
`,
    );
    const daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
    const xds = `127.0.0.1:${await daemon.xdsPort()}`;
    await daemon.waitForLog((l) => l.msg === 'workload CA ready');
    return new SecureMesh(dir, daemon, xds);
  }

  /** The control-plane credentials of a node (or operator) issued at start. */
  credentials(name: string): ControlPlaneCredentials {
    return {
      ca: readFileSync(join(this.dir.path, 'ca.crt')),
      cert: readFileSync(join(this.dir.path, `${name}.crt`)),
      key: readFileSync(join(this.dir.path, `${name}.key`)),
      serverName: 'localhost',
    };
  }

  /** The arguments that authenticate `node` to the xDS port, for `meshbridge agent` and `bootstrap`. */
  private nodeArgs(node: string): string[] {
    return ['--xds', this.xds, '--server-name', 'localhost', '--ca', join(this.dir.path, 'ca.crt'), '--cert', join(this.dir.path, `${node}.crt`), '--key', join(this.dir.path, `${node}.key`)];
  }

  /** `meshbridge agent` for `node`, its files and SDS socket in `<dir>/<node>-agent`; resolves once its certificate is installed. */
  async startAgent(node: string, extra: readonly string[] = []): Promise<{ agent: DaemonProcess; agentDir: string; socket: string }> {
    const agentDir = join(this.dir.path, `${node}-agent`);
    const socket = join(agentDir, 'sds.sock');
    const agent = new DaemonProcess(['agent', ...this.nodeArgs(node), '--out', agentDir, '--sds-socket', socket, ...extra]);
    await agent.waitForLog((l) => l.msg === 'workload certificate installed', 30_000);
    return { agent, agentDir, socket };
  }

  /**
   * A simulated VM: an agent, and a real Envoy bootstrapped by `meshbridge
   * bootstrap --envoy --sds-socket` as the node (`bootstrapArgs` add
   * --namespace, --label...). Stopped in reverse order.
   */
  async startVm(node: string, options: { agentArgs?: readonly string[]; bootstrapArgs?: readonly string[] } = {}): Promise<SimulatedVm> {
    const { agent, agentDir, socket } = await this.startAgent(node, options.agentArgs);
    const printed = await meshbridge(['bootstrap', '--envoy', '--node-id', node, ...this.nodeArgs(node), '--sds-socket', socket, ...(options.bootstrapArgs ?? [])]);
    expect(printed.code, printed.stderr).toBe(0);
    const envoy = new EnvoyProcess(printed.stdout, this.dir.path, `${node}-envoy`);
    return {
      node,
      agent,
      agentDir,
      envoy,
      async stop() {
        await envoy.stop();
        await agent.stop();
      },
    };
  }

  async stop(): Promise<void> {
    await this.daemon.stop();
  }
}

export interface SimulatedVm {
  readonly node: string;
  readonly agent: DaemonProcess;
  /** Where the agent keeps the VM's key and certificates. */
  readonly agentDir: string;
  readonly envoy: EnvoyProcess;
  stop(): Promise<void>;
}
