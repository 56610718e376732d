import { join } from 'node:path';
import type { ControlPlaneCredentials } from '../../src/agent/certificate-client.js';
import type { DaemonProcess } from '../helpers/daemon-process.js';
import type { TempDir } from '../helpers/tmp.js';
import type { EnvoyProcess } from './envoy-process.js';
import { startAgent, startClientEnvoy, startMeshDaemon } from './workload-mesh.js';
import type { MeshDaemon } from './workload-mesh.js';

/**
 * A meshbridge with TLS on its xDS port and the workload CA on, as a fleet
 * runs it (workload-mesh.ts's daemon), and simulated VMs on it: each an agent
 * and a real Envoy bootstrapped as that node, whose inbound listeners come
 * from meshbridge.
 */
export class SecureMesh {
  private constructor(
    readonly dir: TempDir,
    private readonly mesh: MeshDaemon,
  ) {}

  static async start(dir: TempDir, options: { trustDomain: string; nodes: readonly string[]; workloadCa?: string }): Promise<SecureMesh> {
    return new SecureMesh(dir, await startMeshDaemon(dir, options.nodes, options.workloadCa ?? '{}', options.trustDomain));
  }

  get daemon(): DaemonProcess {
    return this.mesh.daemon;
  }

  get xds(): string {
    return this.mesh.xds;
  }

  /** The control-plane credentials of a node (or operator) issued at start. */
  credentials(name: string): ControlPlaneCredentials {
    return this.mesh.creds(name);
  }

  /**
   * A simulated VM: an agent (files and SDS socket in `<dir>/<node>-agent`),
   * and a real Envoy bootstrapped by `meshbridge bootstrap --envoy
   * --sds-socket` as the node (`bootstrapArgs` add --namespace, --label...).
   * Stopped in reverse order.
   */
  async startVm(node: string, options: { agentArgs?: readonly string[]; bootstrapArgs?: readonly string[] } = {}): Promise<SimulatedVm> {
    const agentDir = join(this.dir.path, `${node}-agent`);
    const agent = await startAgent(this.mesh, node, { out: agentDir, extra: options.agentArgs });
    const envoy = await startClientEnvoy(this.mesh, this.dir, node, join(agentDir, 'sds.sock'), options.bootstrapArgs);
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
