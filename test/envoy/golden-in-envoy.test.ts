import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSnapshot } from '../../src/xds/cache/snapshot.js';
import { SnapshotCache } from '../../src/xds/cache/snapshot-cache.js';
import { loadEnvoyApi } from '../../src/xds/protos.js';
import { XdsServer } from '../../src/xds/server/ads-server.js';
import type { Translation } from '../../src/xds/translate/translate.js';
import { EnvoyProcess, freePort } from '../helpers/envoy.js';
import { silentLogger } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * Every golden output (test/golden/out) is also served, case after case, to a
 * real Envoy 1.40 over ADS, which must accept all of it: no golden file can
 * hold config Envoy refuses. Two things are adapted to this machine, nothing
 * else: listener ports (the golden ones, such as 8080, may be taken here) and
 * the certificate files TLS settings name (made here, so Envoy can load them).
 */
const OUT = join(import.meta.dirname, '../golden/out');
/** The endpoints golden tests translate for a node in a zone (locality load balancing), and that node's view. */
const ZONE = { kind: 'endpoints-from-us-east-1a', locality: 'us-east/us-east-1a/rack-1', view: 'sidecar@us-east/us-east-1a/rack-1' };
const cases = readdirSync(OUT)
  // Proxyless clusters (written where they differ from Envoy's) are for gRPC, not Envoy.
  .filter((f) => f.endsWith('.clusters.yaml') && !f.endsWith('.proxyless.clusters.yaml'))
  .map((f) => f.slice(0, -'.clusters.yaml'.length))
  .sort();

describe('golden outputs loaded by a real Envoy', () => {
  const api = loadEnvoyApi();
  const cache = new SnapshotCache();
  const server = new XdsServer(api, cache, silentLogger);
  const certs = tempDir('meshbridge-golden-certs-');
  let envoy: EnvoyProcess;
  let envoyInZone: EnvoyProcess;

  beforeAll(async () => {
    // One self-signed certificate serves as CA and client certificate alike: Envoy only has to load them.
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=meshbridge-golden', '-keyout', join(certs.path, 'key.pem'), '-out', join(certs.path, 'cert.pem')], {
      stdio: 'ignore',
    });
    const xdsPort = await server.listen({ listen: '127.0.0.1:0' });
    envoy = await EnvoyProcess.start({ xdsPort, nodeId: 'golden' });
    envoyInZone = await EnvoyProcess.start({ xdsPort, nodeId: 'golden-in-zone', locality: ZONE.locality });
  });

  afterAll(async () => {
    await envoy?.remove();
    await envoyInZone?.remove();
    await server.shutdown(1_000);
    certs.remove();
  });

  const read = (name: string, kind: string): string => readFileSync(join(OUT, `${name}.${kind}.yaml`), 'utf8');
  const localFiles = (text: string): string =>
    text.replace(/filename: \/etc\/meshbridge\/(\S+)/g, (_all, file: string) => `filename: ${join(certs.path, file.endsWith('.key') ? 'key.pem' : 'cert.pem')}`);

  async function translationOf(name: string, endpointsKind = 'endpoints'): Promise<Translation> {
    const listeners = (parse(read(name, 'listeners')) as { resources: Translation['listeners'] }).resources;
    for (const listener of listeners) {
      const socket = listener.address?.socket_address;
      if (socket) socket.port_value = await freePort();
    }
    return {
      clusters: parse(localFiles(read(name, 'clusters'))) as Translation['clusters'],
      endpoints: parse(read(name, endpointsKind)) as Translation['endpoints'],
      listeners,
      routes: parse(read(name, 'routes')) as Translation['routes'],
      diagnostics: [],
    };
  }

  it('has cases', () => expect(cases.length).toBeGreaterThan(0));

  for (const name of cases) {
    it(`accepts ${name}`, async () => {
      const translation = await translationOf(name);
      cache.set(buildSnapshot('sidecar', translation, (typeUrl, body) => api.pack(typeUrl, body), cache.peek('sidecar')));
      await envoy.waitForConfig((names) => {
        expect(names.clusters).toEqual(translation.clusters.map((c) => c.name).sort());
        expect(names.listeners).toEqual(translation.listeners.map((l) => l.name).sort());
        expect(names.routes).toEqual(expect.arrayContaining(translation.routes.map((r) => r.name)));
      }, 20_000);
      expect(await envoy.rejectedUpdates()).toEqual({});
    });
  }

  for (const name of cases.filter((c) => existsSync(join(OUT, `${c}.${ZONE.kind}.yaml`)))) {
    it(`accepts ${name} as a node in ${ZONE.locality} gets it`, async () => {
      const translation = await translationOf(name, ZONE.kind);
      cache.set(buildSnapshot(ZONE.view, translation, (typeUrl, body) => api.pack(typeUrl, body), cache.peek(ZONE.view)));
      await envoyInZone.waitForConfig((names) => {
        expect(names.clusters).toEqual(translation.clusters.map((c) => c.name).sort());
        expect([...names.endpoints.keys()].sort()).toEqual(translation.endpoints.map((e) => e.cluster_name).sort());
      }, 20_000);
      expect(await envoyInZone.rejectedUpdates()).toEqual({});
    });
  }
});
