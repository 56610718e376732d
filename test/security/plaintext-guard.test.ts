import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import { parseConfig } from '../../src/config/config.js';
import type { Config } from '../../src/config/config.js';
import { XdsSecurity, adminRequiresToken, identityRequired } from '../../src/security/xds-security.js';
import { tempDir } from '../helpers/tmp.js';

function config(yaml: Record<string, unknown>, stateDir: string): Config {
  const { config: parsed, diagnostics } = parseConfig({ registries: [{ kind: 'file', name: 'local', paths: ['x'] }], stateDir, ...yaml }, '/tmp/meshbridge.yaml');
  expect(diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
  return parsed!;
}

function capturingLogger() {
  const lines: { level: number; msg: string }[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as { level: number; msg: string }) });
  return { log, lines };
}

describe('plaintext xDS beyond loopback', () => {
  const dir = tempDir('meshbridge-plaintext-');
  const started: XdsSecurity[] = [];
  afterEach(() => started.splice(0).forEach((s) => s.stop()));

  it.each(['0.0.0.0:15010', '10.0.0.5:15010', '[::]:15010', 'meshbridge.internal:15010'])('refuses to start on %s without TLS', async (listen) => {
    const security = new XdsSecurity(config({ xds: { listen } }, dir.path), capturingLogger().log);
    started.push(security);
    await expect(security.start()).rejects.toMatchObject({ code: 'MB_PLAINTEXT_REFUSED', message: expect.stringContaining('xds.allowPlaintext: true') });
  });

  it('starts with xds.allowPlaintext: true and says so at warn level', async () => {
    const { log, lines } = capturingLogger();
    const security = new XdsSecurity(config({ xds: { listen: '0.0.0.0:15010', allowPlaintext: true } }, dir.path), log);
    started.push(security);
    expect(await security.start()).toBeUndefined();
    expect(lines.find((l) => l.level === 40 && l.msg.includes('PLAINTEXT'))).toBeDefined();
  });

  it.each(['127.0.0.1:15010', 'localhost:15010', '[::1]:15010', '127.0.0.2:15010'])('serves plaintext on loopback %s with no opt-in', async (listen) => {
    const security = new XdsSecurity(config({ xds: { listen } }, dir.path), capturingLogger().log);
    started.push(security);
    expect(await security.start()).toBeUndefined();
  });

  it('a config that names TLS files that do not exist fails with the file named', async () => {
    const security = new XdsSecurity(config({ xds: { listen: '0.0.0.0:15010', tls: { certFile: '/nonexistent/server.crt', keyFile: '/nonexistent/server.key' } } }, dir.path), capturingLogger().log);
    started.push(security);
    await expect(security.start()).rejects.toMatchObject({ code: 'MB_TLS_FILES_INVALID', message: expect.stringContaining('/nonexistent/server.crt') });
  });
});

describe('what is required by default', () => {
  const dir = tempDir('meshbridge-defaults-');
  it.each([
    [{}, false, false],
    [{ xds: { tls: { certFile: 'a', keyFile: 'b' } } }, true, true],
    [{ xds: { tls: { certFile: 'a', keyFile: 'b' } }, security: { requireIdentity: false } }, false, false],
    [{ admin: { listen: '0.0.0.0:15014' } }, false, true],
    [{ admin: { requireToken: true } }, false, true],
  ])('%j: identity %s, admin token %s', (yaml, identity, adminToken) => {
    const c = config(yaml, dir.path);
    expect(identityRequired(c)).toBe(identity);
    expect(adminRequiresToken(c)).toBe(adminToken);
  });

  it('rejects a bad trust domain and an access rule without nodes, naming the field', () => {
    const { diagnostics } = parseConfig(
      { registries: [{ kind: 'file', name: 'local', paths: ['x'] }], security: { trustDomain: 'Bad Domain', access: [{ nodes: [], services: [] }] } },
      '/tmp/meshbridge.yaml',
    );
    expect(diagnostics.filter((d) => d.severity === 'error').map((d) => d.field).sort()).toEqual(['security.access[0].nodes', 'security.trustDomain']);
  });
});
