import { connect } from 'node:http2';
import type { ClientHttp2Session } from 'node:http2';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SnapshotCache } from '../../src/xds/cache/snapshot-cache.js';
import { DEFAULT_TUNING, XdsServer } from '../../src/xds/server/ads-server.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { silentLogger } from '../helpers/fixtures.js';

/** What a client may send on one connection and one stream before the server has taken it in, as the client sees it. */
async function windowsSeenBy(session: ClientHttp2Session): Promise<{ stream: number; connection: number }> {
  await new Promise<void>((resolve, reject) => {
    session.once('remoteSettings', () => resolve());
    session.once('error', reject);
  });
  // The connection's window arrives as a WINDOW_UPDATE right after the server's SETTINGS.
  await expect.poll(() => session.state.remoteWindowSize, { timeout: 5_000 }).toBeGreaterThan(65_535);
  return { stream: session.remoteSettings.initialWindowSize!, connection: session.state.remoteWindowSize! };
}

describe('HTTP/2 receive windows of the xDS port', () => {
  const servers: XdsServer[] = [];
  const sessions: ClientHttp2Session[] = [];
  const serve = async (receiveWindowBytes?: number) => {
    const server = new XdsServer(envoyApi, new SnapshotCache(), silentLogger, {}, receiveWindowBytes === undefined ? {} : { receiveWindowBytes });
    servers.push(server);
    const session = connect(`http://127.0.0.1:${await server.listen({ listen: '127.0.0.1:0' })}`);
    sessions.push(session);
    return session;
  };
  afterEach(() => {
    for (const session of sessions.splice(0)) session.destroy();
  });
  afterAll(async () => {
    await Promise.all(servers.map((server) => server.shutdown(1_000)));
  });

  it('are 256 KiB per connection and per stream, not HTTP/2\'s 64 KiB, so a SotW ACK does not cost a WINDOW_UPDATE each', async () => {
    expect(DEFAULT_TUNING.receiveWindowBytes).toBe(256 * 1024);
    expect(await windowsSeenBy(await serve())).toEqual({ stream: 256 * 1024, connection: 256 * 1024 });
  });

  it('follow receiveWindowBytes, which also bounds what one connection can make the server hold', async () => {
    expect(await windowsSeenBy(await serve(1024 * 1024))).toEqual({ stream: 1024 * 1024, connection: 1024 * 1024 });
  });
});
