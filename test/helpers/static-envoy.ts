import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { envoyBinary, httpRequest } from './envoy.js';
import { eventually } from './eventually.js';
import { tempDir } from './tmp.js';
import type { TempDir } from './tmp.js';

/**
 * A real Envoy on a static bootstrap: for checking a filter config meshbridge
 * produces where no xDS listener carries it yet. Admin on a port it picks,
 * dynamic base id, so it runs beside other Envoys.
 */
export class StaticEnvoy {
  private stderr = '';

  private constructor(
    private readonly child: ChildProcess,
    private readonly dir: TempDir,
    private readonly exited: Promise<number | null>,
    readonly adminAddress: string,
  ) {}

  static async start(bootstrap: object): Promise<StaticEnvoy> {
    const dir = tempDir('meshbridge-static-envoy-');
    const config = dir.write('envoy.json', JSON.stringify(bootstrap));
    const addressFile = `${dir.path}/admin-address`;
    const child = spawn(
      envoyBinary(),
      ['-c', config, '--use-dynamic-base-id', '--admin-address-path', addressFile, '--concurrency', '1', '-l', 'warning', '--disable-hot-restart'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-64_000)));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const adminAddress = await eventually(() => {
        if (child.exitCode !== null) throw new Error(`Envoy exited with ${child.exitCode}:\n${stderr}`);
        const address = existsSync(addressFile) ? readFileSync(addressFile, 'utf8').trim() : '';
        if (!address) throw new Error(`Envoy wrote no admin address yet:\n${stderr}`);
        return address;
      }, 30_000);
      const envoy = new StaticEnvoy(child, dir, exited, adminAddress);
      child.stderr!.on('data', () => (envoy.stderr = stderr));
      // Listeners are bound once the server is LIVE.
      await eventually(async () => {
        const reply = await httpRequest(`http://${adminAddress}/ready`);
        if (reply.status !== 200) throw new Error(`Envoy not ready: ${reply.body}`);
      }, 30_000, 100);
      return envoy;
    } catch (error) {
      child.kill('SIGKILL');
      await exited;
      dir.remove();
      throw error;
    }
  }

  get log(): string {
    return this.stderr;
  }

  async stats(): Promise<Map<string, number>> {
    const reply = await httpRequest(`http://${this.adminAddress}/stats`);
    const stats = new Map<string, number>();
    for (const line of reply.body.split('\n')) {
      const match = /^([^:]+): (\d+)$/.exec(line);
      if (match) stats.set(match[1]!, Number(match[2]));
    }
    return stats;
  }

  async remove(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
    this.dir.remove();
  }
}
