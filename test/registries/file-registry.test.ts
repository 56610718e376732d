import { chmodSync } from 'node:fs';
import { Writable } from 'node:stream';
import { firstValueFrom } from 'rxjs';
import { filter } from 'rxjs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import type { RegistryState } from '../../src/model/registry-state.js';
import { FileRegistry } from '../../src/registries/file/file-registry.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import type { TempDir } from '../helpers/tmp.js';

const entry = (host: string, address: string, port = 80) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${host.split('.')[0]} }
spec:
  hosts: [${host}]
  ports: [{ number: ${port}, name: http }]
  endpoints: [{ address: ${address} }]
`;

class LogCapture extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    for (const line of chunk.toString().split('\n').filter(Boolean)) this.lines.push(JSON.parse(line) as Record<string, unknown>);
    done();
  }
  errors(): string[] {
    return this.lines.filter((l) => (l.level as number) >= 50).map((l) => String(l.msg));
  }
}

describe('file registry', () => {
  let dir: TempDir;
  let logs: LogCapture;
  let registry: FileRegistry;
  let latest: RegistryState | undefined;

  const hosts = () => latest?.services.map((s) => `${s.hostname}=${s.endpoints.map((e) => e.address).join(',')}`).sort();

  async function startWith(files: Record<string, string>): Promise<void> {
    for (const [name, content] of Object.entries(files)) dir.write(name, content);
    logs = new LogCapture();
    registry = new FileRegistry({ name: 'local', paths: ['*.yaml'], baseDir: dir.path }, createLogger('debug', logs));
    registry.states.subscribe((s) => (latest = s));
    await registry.start();
  }

  beforeEach(() => {
    dir = tempDir();
    latest = undefined;
  });
  afterEach(async () => {
    await registry.stop();
    dir.remove();
  });

  it('reads every matching file at start and reports synced', async () => {
    await startWith({ 'a.yaml': entry('a.mesh', '10.0.0.1'), 'b.yaml': entry('b.mesh', '10.0.0.2'), 'ignored.txt': entry('c.mesh', '10.0.0.3') });
    expect(latest?.synced).toBe(true);
    expect(hosts()).toEqual(['a.mesh=10.0.0.1', 'b.mesh=10.0.0.2']);
  });

  it('picks up a change on disk within a second', async () => {
    await startWith({ 'a.yaml': entry('a.mesh', '10.0.0.1') });
    const started = Date.now();
    dir.write('a.yaml', entry('a.mesh', '10.0.0.9'));
    await eventually(() => expect(hosts()).toEqual(['a.mesh=10.0.0.9']), 1_000, 10);
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('withdraws the services of a deleted file and adds those of a new one', async () => {
    await startWith({ 'a.yaml': entry('a.mesh', '10.0.0.1') });
    dir.write('b.yaml', entry('b.mesh', '10.0.0.2'));
    await eventually(() => expect(hosts()).toEqual(['a.mesh=10.0.0.1', 'b.mesh=10.0.0.2']));
    const { rmSync } = await import('node:fs');
    rmSync(`${dir.path}/a.yaml`);
    await eventually(() => expect(hosts()).toEqual(['b.mesh=10.0.0.2']));
  });

  // Each case breaks a.yaml after a good start; a.yaml's last good content must stay in force and b.yaml is untouched.
  const badInputs: { name: string; content: string; expected: RegExp }[] = [
    { name: 'YAML syntax error', content: 'apiVersion: [unclosed\n', expected: /a\.yaml: document 0: YAML syntax: .* at line \d+, column \d+$/ },
    { name: 'unknown kind', content: entry('a.mesh', '10.0.0.5').replace('ServiceEntry', 'ServiceEntree'), expected: /document 0: kind: unknown kind "ServiceEntree"/ },
    { name: 'missing hosts', content: entry('a.mesh', '10.0.0.5').replace('  hosts: [a.mesh]\n', ''), expected: /document 0: spec\.hosts: / },
    { name: 'bad IP', content: entry('a.mesh', '10.0.0.500'), expected: /spec\.endpoints\[0\]\.address: "10\.0\.0\.500" is not an IP address/ },
    { name: 'port out of range', content: entry('a.mesh', '10.0.0.5', 70000), expected: /spec\.ports\[0\]\.number: must be between 1 and 65535/ },
    { name: 'empty file', content: '', expected: /a\.yaml: file is empty; delete the file to remove what it declared/ },
    {
      name: 'error in a later document',
      content: `${entry('a.mesh', '10.0.0.5')}---\n${entry('z.mesh', 'not-an-ip')}`,
      expected: /document 1: spec\.endpoints\[0\]\.address/,
    },
  ];

  for (const { name, content, expected } of badInputs) {
    it(`keeps the file's last good content on ${name}, and names file, document and field`, async () => {
      await startWith({ 'a.yaml': entry('a.mesh', '10.0.0.1'), 'b.yaml': entry('b.mesh', '10.0.0.2') });
      dir.write('a.yaml', content);
      await eventually(() => expect(logs.errors().some((m) => expected.test(m)), logs.errors().join('\n')).toBe(true));
      expect(logs.errors().some((m) => m.includes(dir.path))).toBe(true);
      expect(hosts()).toEqual(['a.mesh=10.0.0.1', 'b.mesh=10.0.0.2']);
      expect(latest?.diagnostics.some((d) => d.severity === 'error' && d.source.endsWith('a.yaml'))).toBe(true);

      dir.write('a.yaml', entry('a.mesh', '10.0.0.7'));
      await eventually(() => expect(hosts()).toEqual(['a.mesh=10.0.0.7', 'b.mesh=10.0.0.2']));
      expect(latest?.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    });
  }

  it('reports an unreadable file and keeps its last good content', async () => {
    await startWith({ 'a.yaml': entry('a.mesh', '10.0.0.1') });
    // Root reads any mode, so the unreadable file is a link to /proc/self/mem, whose first page never reads.
    const { renameSync, symlinkSync } = await import('node:fs');
    let target = '/proc/self/mem';
    if (process.getuid?.() !== 0) {
      target = dir.write('locked.txt', entry('a.mesh', '10.0.0.2'));
      chmodSync(target, 0o000);
    }
    symlinkSync(target, `${dir.path}/a.yaml.new`);
    renameSync(`${dir.path}/a.yaml.new`, `${dir.path}/a.yaml`);
    await eventually(() => expect(logs.errors().some((m) => /a\.yaml: cannot read file/.test(m)), logs.errors().join('\n')).toBe(true));
    expect(hosts()).toEqual(['a.mesh=10.0.0.1']);
  });

  it('merges a host declared in two files, keeps the first file\'s ports, and warns naming both', async () => {
    await startWith({ 'a.yaml': entry('dup.mesh', '10.0.0.1', 80), 'b.yaml': entry('dup.mesh', '10.0.0.2', 81) });
    expect(hosts()).toEqual(['dup.mesh=10.0.0.1,10.0.0.2']);
    expect(latest?.services[0]?.ports.map((p) => p.number)).toEqual([80]);
    const warning = latest?.diagnostics.find((d) => d.severity === 'warning' && d.field === 'spec.ports');
    expect(warning?.source).toMatch(/b\.yaml$/);
    expect(warning?.message).toMatch(/dup\.mesh is also declared in .*a\.yaml document 0/);
  });

  it('warns about fields it does not implement instead of dropping them silently', async () => {
    await startWith({ 'a.yaml': entry('a.mesh', '10.0.0.1').replace('  hosts:', '  exportTo: ["."]\n  colour: blue\n  hosts:') });
    const fields = latest?.diagnostics.filter((d) => d.severity === 'warning').map((d) => d.field);
    expect(fields).toEqual(expect.arrayContaining(['spec.exportTo', 'spec.colour']));
    expect(hosts()).toEqual(['a.mesh=10.0.0.1']);
  });

  it('emits nothing until the first scan is complete', async () => {
    dir.write('a.yaml', entry('a.mesh', '10.0.0.1'));
    logs = new LogCapture();
    registry = new FileRegistry({ name: 'local', paths: ['*.yaml'], baseDir: dir.path }, createLogger('silent', logs));
    const first = firstValueFrom(registry.states.pipe(filter(() => true)));
    await registry.start();
    expect((await first).services.map((s) => s.hostname)).toEqual(['a.mesh']);
  });

  describe('workload identity', () => {
    const identities = () =>
      latest?.services.flatMap((s) => s.endpoints.map((e) => `${s.hostname} ${e.address} ${e.identity === undefined ? '-' : `${e.identity.namespace}/${e.identity.serviceAccount}`}`));

    it('WorkloadEntry.serviceAccount in the WorkloadEntry namespace; inline endpoints in the ServiceEntry namespace; none without one', async () => {
      await startWith({
        'vm.yaml': `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: shop }
spec:
  hosts: [reviews.shop.mesh]
  ports: [{ number: 9080, name: http }]
  workloadSelector: { labels: { app: reviews } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: reviews-vm-1, namespace: shop }
spec: { address: 10.0.0.1, labels: { app: reviews }, serviceAccount: reviews }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: reviews-vm-2, namespace: shop }
spec: { address: 10.0.0.2, labels: { app: reviews } }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings }
spec:
  hosts: [ratings.mesh]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 10.0.0.3, serviceAccount: ratings-sa }]
`,
      });
      expect(identities()).toEqual(['ratings.mesh 10.0.0.3 default/ratings-sa', 'reviews.shop.mesh 10.0.0.1 shop/reviews', 'reviews.shop.mesh 10.0.0.2 -']);
      expect(latest?.diagnostics.filter((d) => d.field?.includes('serviceAccount'))).toEqual([]);
    });

    it('rejects a service account that is not a name, naming file, document and field, and keeps the last good file', async () => {
      await startWith({ 'a.yaml': entry('a.mesh', '10.0.0.1') });
      dir.write('a.yaml', entry('a.mesh', '10.0.0.2').replace('address: 10.0.0.2', 'address: 10.0.0.2, serviceAccount: "x/../admin"'));
      await eventually(() => expect(logs.errors().some((m) => /a\.yaml.*document 0.*spec\.endpoints\[0\]\.serviceAccount/.test(m)), logs.errors().join('\n')).toBe(true));
      expect(identities()).toEqual(['a.mesh 10.0.0.1 -']);
    });

    it('a namespace that cannot be in a SPIFFE ID gives no identity and a warning on metadata.namespace', async () => {
      await startWith({
        'a.yaml': entry('a.mesh', '10.0.0.1')
          .replace('metadata: { name: a }', 'metadata: { name: a, namespace: Shop_1 }')
          .replace('address: 10.0.0.1', 'address: 10.0.0.1, serviceAccount: a'),
      });
      expect(identities()).toEqual(['a.mesh 10.0.0.1 -']);
      const warning = latest?.diagnostics.find((d) => d.field === 'metadata.namespace');
      expect(warning?.message).toMatch(/namespace "Shop_1" is not a DNS label.*no identity/);
    });
  });
});
