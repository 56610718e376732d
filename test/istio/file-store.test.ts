import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { formatDiagnostic } from '../../src/errors.js';
import type { Diagnostic } from '../../src/errors.js';
import { IstioFileStores, readBounded } from '../../src/istio/file-store.js';
import { MisplacedDocuments } from '../../src/istio/misplaced-documents.js';
import type { ReaderPatterns } from '../../src/istio/misplaced-documents.js';
import { PolicySource } from '../../src/istio/policy-source.js';
import type { PolicySet } from '../../src/istio/policy-set.js';
import { createLogger } from '../../src/log.js';
import type { RegistryState } from '../../src/model/registry-state.js';
import { FileRegistry } from '../../src/registries/file/file-registry.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../helpers/tmp.js';
import type { TempDir } from '../helpers/tmp.js';

const entry = (host: string, address: string) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${host.split('.')[0]} }
spec:
  hosts: [${host}]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: ${address} }]
`;

const rule = (host: string) => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${host.split('.')[0]}-rule }
spec:
  host: ${host}
  trafficPolicy: { loadBalancer: { simple: RANDOM } }
`;

class LogCapture extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    for (const line of chunk.toString().split('\n').filter(Boolean)) this.lines.push(JSON.parse(line) as Record<string, unknown>);
    done();
  }
  messages(msg: string): Record<string, unknown>[] {
    return this.lines.filter((l) => l.msg === msg);
  }
}

describe('Istio file store', () => {
  let dir: TempDir;
  let logs: LogCapture;
  const stops: (() => Promise<void>)[] = [];

  beforeEach(() => {
    dir = tempDir();
    logs = new LogCapture();
  });
  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
    dir.remove();
  });

  function startRegistry(stores: IstioFileStores) {
    const registry = new FileRegistry({ name: 'local', paths: ['*.yaml'], baseDir: dir.path }, createLogger('debug', logs), stores);
    const seen: { latest?: RegistryState } = {};
    registry.states.subscribe((s) => (seen.latest = s));
    stops.push(() => registry.stop());
    return { registry, seen };
  }

  it('reads and parses a path listed by a file registry and by the policy reader once, and gives both its documents', async () => {
    dir.write('mesh.yaml', `${entry('a.mesh', '10.0.0.1')}---\n${rule('a.mesh')}`);
    const stores = new IstioFileStores({ fileBytes: 1 << 20 }, createLogger('debug', logs));
    const { registry, seen } = startRegistry(stores);
    const policy = new PolicySource({ paths: ['*.yaml'], baseDir: dir.path }, createLogger('debug', logs), stores);
    stops.push(() => policy.stop());
    let policies: PolicySet | undefined;
    policy.policies.subscribe((p) => (policies = p));
    await Promise.all([registry.start(), policy.start()]);

    await eventually(() => expect(policies?.destinationRules.map((d) => d.name)).toEqual(['a-rule']));
    expect(seen.latest?.services.map((s) => s.hostname)).toEqual(['a.mesh']);
    expect(logs.messages('file accepted')).toHaveLength(1);

    dir.write('mesh.yaml', `${entry('a.mesh', '10.0.0.2')}---\n${rule('a.mesh')}`);
    await eventually(() => expect(seen.latest?.services[0]?.endpoints.map((e) => e.address)).toEqual(['10.0.0.2']));
    expect(logs.messages('file accepted')).toHaveLength(2);
    expect([...(seen.latest?.diagnostics ?? []), ...(policies?.diagnostics ?? [])]).toEqual([]);
    // Listed by both readers, nothing in it is misplaced; and the check joins the stores rather than reading again.
    const misplaced = new MisplacedDocuments(stores, { registries: [`${dir.path}/*.yaml`], policy: [`${dir.path}/*.yaml`] });
    stops.push(() => misplaced.stop());
    let found: Diagnostic[] | undefined;
    misplaced.diagnostics.subscribe((d) => (found = d));
    await misplaced.start();
    await eventually(() => expect(found).toEqual([]));
    expect(logs.messages('file accepted')).toHaveLength(2);
  });

  it('rejects a file over limits.fileBytes before parsing it, naming the file, and keeps its last good content', async () => {
    dir.write('a.yaml', entry('a.mesh', '10.0.0.1'));
    const stores = new IstioFileStores({ fileBytes: 1_000 }, createLogger('debug', logs));
    const { registry, seen } = startRegistry(stores);
    await registry.start();
    expect(seen.latest?.services.map((s) => s.hostname)).toEqual(['a.mesh']);

    // Valid YAML, so only the size can reject it; a comment pads it past the limit.
    dir.write('a.yaml', `${entry('a.mesh', '10.0.0.9')}# ${'x'.repeat(2_000)}\n`);
    await eventually(() => expect(seen.latest?.diagnostics.some((d) => d.severity === 'error')).toBe(true));
    const errors = seen.latest!.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^error: .*a\.yaml: file is \d+ bytes, over the limit of 1000 \(limits\.fileBytes\)/);
    expect(seen.latest?.services[0]?.endpoints.map((e) => e.address)).toEqual(['10.0.0.1']);
  });

  async function misplacedIn(patterns: ReaderPatterns): Promise<string[]> {
    const stores = new IstioFileStores({ fileBytes: 1 << 20 }, createLogger('silent', logs));
    const misplaced = new MisplacedDocuments(stores, patterns);
    stops.push(() => misplaced.stop());
    let found: Diagnostic[] | undefined;
    misplaced.diagnostics.subscribe((d) => (found = d));
    await misplaced.start();
    await eventually(() => expect(found).toBeDefined());
    return found!.map(formatDiagnostic);
  }

  it('reads a file up to the limit exactly, and refuses one byte more', async () => {
    const exact = dir.write('exact.yaml', 'x'.repeat(1_000));
    const over = dir.write('over.yaml', 'x'.repeat(1_001));
    const empty = dir.write('empty.yaml', '');
    expect(await readBounded(exact, 1_000)).toBe('x'.repeat(1_000));
    expect(await readBounded(over, 1_000)).toEqual({ problem: 'file is 1001 bytes, over the limit of 1000 (limits.fileBytes); nothing in it is read' });
    expect(await readBounded(empty, 1_000)).toBe('');
    expect(await readBounded(`${dir.path}/missing.yaml`, 1_000)).toEqual({ problem: expect.stringMatching(/^cannot read file: ENOENT/) });
    // A file larger than its stat said (procfs reports 0): the limit still holds while reading.
    expect(await readBounded('/proc/self/status', 10)).toEqual({ problem: 'file is more than 10 bytes, over the limit of 10 (limits.fileBytes); nothing in it is read' });
    expect(await readBounded('/proc/self/status', 1 << 20)).toMatch(/^Name:/);
  });

  it('reports a DestinationRule in a file listed only as a registry path instead of ignoring it silently', async () => {
    dir.write('a.yaml', `${entry('a.mesh', '10.0.0.1')}---\n${rule('a.mesh')}`);
    expect(await misplacedIn({ registries: [`${dir.path}/*.yaml`], policy: [`${dir.path}/policy/*.yaml`] })).toEqual([
      `warning: ${dir.path}/a.yaml: document 1: kind: DestinationRule a-rule is not applied: this file is not read for that kind (policy.paths does not list it)`,
    ]);
  });

  it('reports a ServiceEntry in a file listed only under policy.paths', async () => {
    dir.write('rules.yaml', `${rule('a.mesh')}---\n${entry('a.mesh', '10.0.0.1')}`);
    expect(await misplacedIn({ registries: [], policy: [`${dir.path}/rules.yaml`] })).toEqual([
      `warning: ${dir.path}/rules.yaml: document 1: kind: ServiceEntry a is not applied: this file is not read for that kind (no file registry lists it)`,
    ]);
  });
});
