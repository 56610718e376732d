import { createRequire } from 'node:module';
import type protobuf from 'protobufjs';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { loadEnvoyRoot } from '../../src/xds/protos.js';
import { meshbridge } from '../helpers/daemon-process.js';
import { tempDir } from '../helpers/tmp.js';

const require = createRequire(import.meta.url);

/** Envoy's Bootstrap message, to check that every field the CLI writes is a real one. */
function bootstrapType(): protobuf.Type {
  return loadEnvoyRoot(['envoy/config/bootstrap/v3/bootstrap.proto', 'envoy/extensions/upstreams/http/v3/http_protocol_options.proto']).lookupType(
    'envoy.config.bootstrap.v3.Bootstrap',
  );
}

/** YAML durations ("5s") are proto-JSON; protobufjs wants {seconds}. */
function withDurationObjects(value: unknown): unknown {
  const duration = typeof value === 'string' ? /^(\d+)(?:\.(\d{1,9}))?s$/.exec(value) : null;
  if (duration) return { seconds: Number(duration[1]), ...(duration[2] ? { nanos: Number(duration[2].padEnd(9, '0')) } : {}) };
  if (Array.isArray(value)) return value.map(withDurationObjects);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withDurationObjects(v)]));
  return value;
}

describe('meshbridge bootstrap', () => {
  it('prints an Envoy bootstrap whose every field is one of Envoy\'s, pointing at the daemon over ADS', async () => {
    const { stdout, code } = await meshbridge(['bootstrap', '--envoy', '--node-id', 'vm-1', '--cluster', 'web', '--xds', '10.0.0.5:15010', '--locality', 'eu/eu-1']);
    expect(code).toBe(0);
    const written = withDurationObjects(parse(stdout)) as Record<string, unknown>;
    const type = bootstrapType();
    const roundTrip = type.toObject(type.fromObject(written), { json: true, longs: Number, enums: String, defaults: false });
    expect(roundTrip).toEqual(written);
    expect(written).toMatchObject({
      node: { id: 'vm-1', cluster: 'web', locality: { region: 'eu', zone: 'eu-1' } },
      dynamic_resources: { ads_config: { api_type: 'GRPC', transport_api_version: 'V3' }, cds_config: { ads: {} }, lds_config: { ads: {} } },
    });
    expect(stdout).toContain('address: 10.0.0.5');
    expect(stdout).toContain('port_value: 15010');
  });

  it('prints an Envoy bootstrap for incremental xDS with --delta', async () => {
    const { stdout, code } = await meshbridge(['bootstrap', '--envoy', '--delta', '--node-id', 'vm-1']);
    expect(code).toBe(0);
    const written = withDurationObjects(parse(stdout)) as Record<string, unknown>;
    const type = bootstrapType();
    expect(type.toObject(type.fromObject(written), { json: true, longs: Number, enums: String, defaults: false })).toEqual(written);
    expect(written).toMatchObject({ dynamic_resources: { ads_config: { api_type: 'DELTA_GRPC' } } });
  });

  it('prints a gRPC bootstrap that grpc-js-xds accepts', async () => {
    const { stdout, code } = await meshbridge(['bootstrap', '--grpc', '--node-id', 'client-1', '--xds', '127.0.0.1:15999']);
    expect(code).toBe(0);
    const { validateBootstrapConfig } = require('@grpc/grpc-js-xds/build/src/xds-bootstrap.js') as {
      validateBootstrapConfig: (config: unknown) => { xdsServers: { server_uri: string }[]; node: { id: string } };
    };
    const validated = validateBootstrapConfig(JSON.parse(stdout));
    expect(validated.xdsServers[0]!.server_uri).toBe('127.0.0.1:15999');
    expect(validated.node.id).toBe('client-1');
  });

  it('lists every replica given with --xds: all endpoints of Envoy\'s xds cluster, and gRPC xds_servers in the order given', async () => {
    const replicas = ['10.0.0.5:15010', 'meshbridge-2.internal:15010', '10.0.0.7:15011'];
    const envoy = await meshbridge(['bootstrap', '--envoy', '--node-id', 'vm-1', ...replicas.flatMap((r) => ['--xds', r])]);
    expect(envoy.code).toBe(0);
    const written = withDurationObjects(parse(envoy.stdout)) as Record<string, unknown>;
    const type = bootstrapType();
    expect(type.toObject(type.fromObject(written), { json: true, longs: Number, enums: String, defaults: false })).toEqual(written);
    const cluster = (written as { static_resources: { clusters: { type: string; load_assignment: { endpoints: { lb_endpoints: { endpoint: { address: { socket_address: { address: string; port_value: number } } } }[] }[] } }[] } })
      .static_resources.clusters[0]!;
    // A name among the addresses: Envoy must resolve it.
    expect(cluster.type).toBe('STRICT_DNS');
    expect(cluster.load_assignment.endpoints[0]!.lb_endpoints.map((e) => `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}`)).toEqual(replicas);

    const grpc = await meshbridge(['bootstrap', '--grpc', '--node-id', 'client-1', ...replicas.flatMap((r) => ['--xds', r]), '--namespace', 'shop', '--label', 'app=vm20', '--label', 'track=a=b']);
    expect(grpc.code).toBe(0);
    const { validateBootstrapConfig } = require('@grpc/grpc-js-xds/build/src/xds-bootstrap.js') as {
      validateBootstrapConfig: (config: unknown) => { xdsServers: { server_uri: string }[]; node: { id: string; metadata?: unknown } };
    };
    const validated = validateBootstrapConfig(JSON.parse(grpc.stdout));
    expect(validated.xdsServers.map((s) => s.server_uri)).toEqual(replicas);
    expect(JSON.parse(grpc.stdout).node.metadata).toEqual({ NAMESPACE: 'shop', LABELS: { app: 'vm20', track: 'a=b' } });
  });

  it('refuses the same --xds twice and a --label that is not KEY=VALUE', async () => {
    const twice = await meshbridge(['bootstrap', '--envoy', '--node-id', 'x', '--xds', '10.0.0.5:1', '--xds', '10.0.0.5:1']);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain('--xds 10.0.0.5:1 is given twice');
    const label = await meshbridge(['bootstrap', '--grpc', '--node-id', 'x', '--label', 'novalue']);
    expect(label.code).toBe(2);
    expect(label.stderr).toContain('--label must be KEY=VALUE');
  });

  it('--workload-certs-refresh sets how often gRPC re-reads the agent\'s files; a period outside 1s..24h or without --workload-certs is refused', async () => {
    const printed = await meshbridge(['bootstrap', '--grpc', '--node-id', 'x', '--workload-certs', '/var/lib/agent', '--workload-certs-refresh', '2m']);
    expect(printed.code, printed.stderr).toBe(0);
    const providers = (JSON.parse(printed.stdout) as { certificate_providers: Record<string, { config: { refresh_interval: string; ca_certificate_file: string } }> }).certificate_providers;
    expect(providers['default']?.config).toMatchObject({ refresh_interval: '120s', ca_certificate_file: '/var/lib/agent/root-cert.pem' });
    const byDefault = await meshbridge(['bootstrap', '--grpc', '--node-id', 'x', '--workload-certs', '/var/lib/agent']);
    expect(JSON.parse(byDefault.stdout).certificate_providers.default.config.refresh_interval).toBe('60s');
    for (const [args, message] of [
      [['--workload-certs', '/d', '--workload-certs-refresh', '500ms'], '--workload-certs-refresh must be a duration from 1s to 24h'],
      [['--workload-certs', '/d', '--workload-certs-refresh', '25h'], '--workload-certs-refresh must be a duration from 1s to 24h'],
      [['--workload-certs-refresh', '5s'], '--workload-certs-refresh needs --workload-certs'],
    ] as const) {
      const refused = await meshbridge(['bootstrap', '--grpc', '--node-id', 'x', ...args]);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain(message);
    }
  });

  it('refuses a bootstrap without a node id or with both kinds, exit code 2', async () => {
    expect((await meshbridge(['bootstrap', '--grpc'])).code).toBe(2);
    const both = await meshbridge(['bootstrap', '--grpc', '--envoy', '--node-id', 'x']);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('exactly one of --envoy or --grpc');
  });
});

describe('meshbridge validate', () => {
  it('exits 0 on good files and 1 on errors, naming file, document and field', async () => {
    const dir = tempDir();
    const good = dir.write('good.yaml', 'apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: { name: a }\nspec: { hosts: [a.mesh], ports: [{ number: 80, name: http }] }\n');
    const bad = dir.write('bad.yaml', 'apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: { name: a }\nspec: { hosts: [a.mesh], ports: [{ number: 0, name: http }] }\n');
    expect((await meshbridge(['validate', good])).code).toBe(0);
    const result = await meshbridge(['validate', good, bad]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(`error: ${bad}: document 0: spec.ports[0].number: must be between 1 and 65535`);
    expect(result.stdout).toContain('2 file(s), 1 error(s)');
    dir.remove();
  });
});

describe('meshbridge validate with traffic policy', () => {
  it('checks routes against the subsets and hosts of every file given', async () => {
    const dir = tempDir();
    const services = dir.write(
      'services.yaml',
      'apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: { name: a }\nspec: { hosts: [a.mesh], ports: [{ number: 80, name: http }] }\n',
    );
    const rules = dir.write(
      'rules.yaml',
      'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: a }\nspec:\n  hosts: [a, b.mesh]\n  http: [{ route: [{ destination: { host: a, subset: v9 } }] }]\n',
    );
    const result = await meshbridge(['validate', services, rules]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(`error: ${rules}: document 0: spec.http[0].route[0].destination.subset: subset "v9" of a.mesh is not declared: no DestinationRule applies to a.mesh`);
    dir.remove();
  });

  it('passes the quickstart example', async () => {
    const { readdirSync } = await import('node:fs');
    const mesh = `${import.meta.dirname}/../../examples/quickstart/mesh`;
    const result = await meshbridge(['validate', ...readdirSync(mesh).map((f) => `${mesh}/${f}`)]);
    expect(result.stdout).toContain('0 error(s), 0 warning(s)');
    expect(result.code).toBe(0);
  });
});

describe('meshbridge run', () => {
  it('exits non-zero naming the field when the config is invalid', async () => {
    const dir = tempDir();
    const config = dir.write('meshbridge.yaml', 'xds: { listen: nowhere }\nregistries: [{ kind: file, name: local, paths: [] }]\n');
    const result = await meshbridge(['run', '--config', config]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${config}: xds.listen: must be "host:port"`);
    expect(result.stderr).toContain(`${config}: registries[0].paths: must list at least one path`);
    dir.remove();
  });

  it('exits non-zero when the config file does not exist', async () => {
    const result = await meshbridge(['run', '--config', '/nonexistent/meshbridge.yaml']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('cannot read config /nonexistent/meshbridge.yaml');
  });
});
