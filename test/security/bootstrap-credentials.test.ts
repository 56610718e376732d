import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { meshbridge } from '../helpers/daemon-process.js';
import { tempDir } from '../helpers/tmp.js';

describe('meshbridge bootstrap with credentials', () => {
  const dir = tempDir('meshbridge-bootstrap-');
  afterAll(() => dir.remove());
  const token = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ2bS0xIn0.c2lnbmF0dXJl';

  it('--grpc --ca --cert --key --token-file: tls channel_creds with the files, jwt_token_file call_creds', async () => {
    const tokenFile = dir.write('vm-1.token', `${token}\n`);
    const { stdout, code, stderr } = await meshbridge([
      'bootstrap', '--grpc', '--node-id', 'vm-1', '--xds', 'meshbridge.internal:15010',
      '--ca', '/etc/mb/ca.crt', '--cert', '/etc/mb/vm-1.crt', '--key', '/etc/mb/vm-1.key', '--token-file', tokenFile,
    ]);
    expect(code, stderr).toBe(0);
    const server = JSON.parse(stdout).xds_servers[0];
    expect(server.channel_creds).toEqual([
      {
        type: 'tls',
        config: { ca_certificate_file: '/etc/mb/ca.crt', certificate_file: '/etc/mb/vm-1.crt', private_key_file: '/etc/mb/vm-1.key', refresh_interval: '600s' },
      },
    ]);
    expect(server.call_creds).toEqual([{ type: 'jwt_token_file', config: { jwt_token_file: tokenFile } }]);
  });

  it('--envoy --token-file puts the token in initial_metadata, and --ca checks the server name', async () => {
    const tokenFile = dir.write('vm-2.token', token);
    const { stdout, code } = await meshbridge(['bootstrap', '--envoy', '--node-id', 'vm-2', '--xds', 'meshbridge.internal:15010', '--ca', '/etc/mb/ca.crt', '--token-file', tokenFile]);
    expect(code).toBe(0);
    const bootstrap = parse(stdout);
    expect(bootstrap.dynamic_resources.ads_config.grpc_services[0].initial_metadata).toEqual([{ key: 'authorization', value: `Bearer ${token}` }]);
    const tls = bootstrap.static_resources.clusters[0].transport_socket.typed_config;
    expect(tls.sni).toBe('meshbridge.internal');
    expect(tls.common_tls_context.tls_certificates).toBeUndefined();
    expect(tls.common_tls_context.validation_context.match_typed_subject_alt_names).toEqual([{ san_type: 'DNS', matcher: { exact: 'meshbridge.internal' } }]);
  });

  it.each([
    [['--cert', '/a.crt'], '--cert and --key go together'],
    [['--cert', '/a.crt', '--key', '/a.key'], 'need --ca'],
    [['--token-file', '/nonexistent/token'], 'cannot read --token-file'],
  ])('refuses %j: %s', async (flags, message) => {
    const { code, stderr } = await meshbridge(['bootstrap', '--envoy', '--node-id', 'vm-1', ...flags]);
    expect(code).toBe(2);
    expect(stderr).toContain(message);
  });

  it('refuses a token file that holds something else', async () => {
    const file = dir.write('not-a-token', 'hello world\n');
    const { code, stderr } = await meshbridge(['bootstrap', '--envoy', '--node-id', 'vm-1', '--token-file', file]);
    expect(code).toBe(2);
    expect(stderr).toContain('does not hold a token');
  });
});
