import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually } from '../helpers/eventually.js';

/** The Envoy 1.40 binary scripts/test.sh installs; a missing one fails the test, never skips it. */
export function envoyBin(): string {
  const bin = process.env['MESHBRIDGE_ENVOY_BIN'];
  if (!bin) throw new Error('MESHBRIDGE_ENVOY_BIN is not set: run the suite through scripts/test.sh (it installs Envoy 1.40)');
  return bin;
}

/** A real Envoy started from a bootstrap, its admin API on a port it picks itself. */
export class EnvoyProcess {
  private readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;
  private output = '';
  private readonly adminPathFile: string;

  constructor(bootstrapYaml: string, dir: string, name: string) {
    const config = join(dir, `${name}.envoy.yaml`);
    // The admin port in a printed bootstrap is fixed; tests need a free one.
    writeFileSync(config, bootstrapYaml.replace(/port_value: 15000\b/, 'port_value: 0'), { mode: 0o600 });
    this.adminPathFile = join(dir, `${name}.admin-address`);
    this.child = spawn(
      envoyBin(),
      ['--config-path', config, '--use-dynamic-base-id', '--admin-address-path', this.adminPathFile, '-l', 'warning', '--drain-time-s', '1'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (this.output = (this.output + chunk).slice(-20_000)));
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.output = (this.output + chunk).slice(-20_000)));
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  get log(): string {
    return this.output;
  }

  private async admin(): Promise<string> {
    return eventually(() => {
      const address = readFileSync(this.adminPathFile, 'utf8').trim();
      if (!address) throw new Error(`Envoy has not written its admin address; its log:\n${this.output}`);
      return address;
    }, 20_000);
  }

  async get(path: string): Promise<string> {
    const response = await fetch(`http://${await this.admin()}${path}`, { signal: AbortSignal.timeout(5_000) });
    return response.text();
  }

  /** One counter or gauge from /stats, 0 when absent. */
  async stat(name: string): Promise<number> {
    const text = await this.get(`/stats?filter=${encodeURIComponent(`^${name.replace(/[.|]/g, '\\$&')}$`)}`);
    const match = new RegExp(`^${name.replace(/[.|]/g, '\\$&')}: (\\d+)$`, 'm').exec(text);
    return match === null ? 0 : Number(match[1]);
  }

  /** Names of the dynamic clusters Envoy holds. */
  async dynamicClusters(): Promise<string[]> {
    const dump = JSON.parse(await this.get('/config_dump?resource=dynamic_active_clusters')) as { configs?: { cluster?: { name?: string } }[] };
    return (dump.configs ?? []).map((c) => c.cluster?.name ?? '').sort();
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await this.exited;
    clearTimeout(timer);
  }
}
