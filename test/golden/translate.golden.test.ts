import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import { mergeCatalog } from '../../src/model/merge.js';
import type { RegistryState } from '../../src/model/registry-state.js';
import { hasErrors, parseIstioText } from '../../src/policy/istio/documents.js';
import type { ParsedFile } from '../../src/policy/istio/documents.js';
import { SERVICE_KIND_HANDLERS } from '../../src/policy/istio/service-entry.js';
import { servicesFromFiles } from '../../src/registries/file/service-entries.js';
import { translate } from '../../src/xds/translate/translate.js';

/**
 * Golden files for the pure stages: each `in/<case>.yaml` (one registry) or
 * `in/<case>/<registry>.yaml` (several, merged in name order) is parsed,
 * merged and translated, and every output compared with `out/<case>.*.yaml`.
 * MESHBRIDGE_UPDATE_GOLDEN=1 (npm run golden:update) rewrites them and deletes stale ones.
 */
const IN = join(import.meta.dirname, 'in');
const OUT = join(import.meta.dirname, 'out');
const UPDATE = process.env.MESHBRIDGE_UPDATE_GOLDEN === '1';

function registryState(name: string, file: string): RegistryState {
  const parsed: ParsedFile = parseIstioText(basename(file), readFileSync(file, 'utf8'), SERVICE_KIND_HANDLERS);
  if (hasErrors(parsed.diagnostics)) throw new Error(`golden input ${file} is invalid: ${JSON.stringify(parsed.diagnostics)}`);
  const { services, diagnostics } = servicesFromFiles(new Map([[basename(file), parsed]]), name);
  return { registry: name, kind: 'file', services, synced: true, stale: false, diagnostics: [...parsed.diagnostics, ...diagnostics] };
}

function casesIn(dir: string): { name: string; states: RegistryState[] }[] {
  return readdirSync(dir)
    .sort()
    .map((entry) => {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) {
        const files = readdirSync(path).filter((f) => f.endsWith('.yaml')).sort();
        return { name: entry, states: files.map((f) => registryState(basename(f, '.yaml'), join(path, f))) };
      }
      return { name: basename(entry, '.yaml'), states: [registryState('file', path)] };
    });
}

function outputsFor(states: RegistryState[]): Record<string, unknown> {
  const catalog = mergeCatalog(states);
  const sidecar = translate(catalog, 'sidecar', { sidecarBind: '127.0.0.1' });
  const proxyless = translate(catalog, 'proxyless', { sidecarBind: '127.0.0.1' });
  return {
    catalog: { ...catalog, diagnostics: states.flatMap((s) => s.diagnostics) },
    clusters: sidecar.clusters,
    endpoints: sidecar.endpoints,
    listeners: { resources: sidecar.listeners, diagnostics: sidecar.diagnostics },
    routes: sidecar.routes,
    'proxyless.listeners': proxyless.listeners,
    'proxyless.routes': proxyless.routes,
  };
}

const cases = casesIn(IN);

describe('translation golden files', () => {
  if (UPDATE) {
    mkdirSync(OUT, { recursive: true });
    const expected = new Set<string>();
    for (const { name, states } of cases) {
      for (const [kind, value] of Object.entries(outputsFor(states))) {
        const file = `${name}.${kind}.yaml`;
        expected.add(file);
        writeFileSync(join(OUT, file), stringify(value, { aliasDuplicateObjects: false }));
      }
    }
    for (const file of readdirSync(OUT)) if (!expected.has(file)) rmSync(join(OUT, file));
  }

  it('has cases', () => expect(cases.length).toBeGreaterThan(0));

  for (const { name, states } of cases) {
    it(name, () => {
      for (const [kind, value] of Object.entries(outputsFor(states))) {
        const file = join(OUT, `${name}.${kind}.yaml`);
        expect(existsSync(file), `${file} is missing; run npm run golden:update`).toBe(true);
        expect(stringify(value, { aliasDuplicateObjects: false }), `${name}.${kind}`).toBe(readFileSync(file, 'utf8'));
      }
    });
  }

  it('is deterministic: the same input gives byte-identical output', () => {
    for (const { states } of cases) {
      const shuffled = states.map((s) => ({ ...s, services: [...s.services].reverse() }));
      const a = outputsFor(states);
      const b = outputsFor(shuffled);
      expect(stringify(b.clusters)).toBe(stringify(a.clusters));
      expect(stringify(b.endpoints)).toBe(stringify(a.endpoints));
      expect(stringify(b.routes)).toBe(stringify(a.routes));
    }
  });
});
