import { execFile, execFileSync } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/config.js';
import { MeshbridgeError } from '../../src/errors.js';
import { createCa, issueCertificate } from '../../src/security/ca.js';
import { ReloadingTlsFiles, reloadingServerCredentials } from '../../src/security/tls-files.js';
import { SnapshotCache } from '../../src/xds/cache/snapshot-cache.js';
import { DEFAULT_TUNING, XdsServer } from '../../src/xds/server/ads-server.js';
import { MAX_ACCEPT_DESCRIPTORS, ListenSocket, acceptDescriptors } from '../../src/xds/server/listen-socket.js';
import type { XdsServerOptions } from '../../src/xds/server/ads-server.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { RawAdsClient } from '../helpers/ads-client.js';
import { DaemonProcess } from '../helpers/daemon-process.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { eventually } from '../helpers/eventually.js';
import { catalogOf, publish, service, silentLogger } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';
import { SecureAdsStream } from '../security/secure-client.js';

const SOMAXCONN = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim());
const CLUSTER = 'outbound|9080||reviews.mesh.local';

/**
 * The accept-queue size of the TCP socket listening on `port`, as the kernel
 * holds it: `ss` shows it in the Send-Q column of a listening socket. One row
 * per listening address.
 */
async function listenBacklogs(port: number): Promise<number[]> {
  const { stdout } = await promisify(execFile)('ss', ['-Hltn', `sport = :${port}`]);
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('LISTEN'))
    .map((line) => Number(line.trim().split(/\s+/)[2]));
}

function serverWithCatalog(tuning: ConstructorParameters<typeof XdsServer>[4] = {}): XdsServer {
  const cache = new SnapshotCache();
  publish(cache, catalogOf(service('reviews.mesh.local').port(9080).endpoint('10.0.0.1').build()));
  return new XdsServer(envoyApi, cache, silentLogger, {}, tuning);
}

async function listening(tuning: ConstructorParameters<typeof XdsServer>[4], options: XdsServerOptions): Promise<{ server: XdsServer; port: number }> {
  const server = serverWithCatalog(tuning);
  return { server, port: await server.listen(options) };
}

/** An ADS client at `address` asking for clusters gets the catalog's one cluster. */
async function expectServesClusters(address: string): Promise<void> {
  const client = new RawAdsClient(address);
  try {
    client.send({ type_url: TypeUrl.Cluster });
    expect(RawAdsClient.names(await client.next())).toEqual([CLUSTER]);
  } finally {
    client.close();
  }
}

function occupiedPort(): Promise<Server> {
  return new Promise((resolve) => {
    const blocker = createServer();
    blocker.listen(0, '127.0.0.1', () => resolve(blocker));
  });
}

function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (error: Error & { code?: string }) => resolve(error.code === 'ECONNREFUSED'));
  });
}

describe('the xDS port is meshbridge\'s own socket, listening with the configured backlog', () => {
  it('listens with the backlog it is given, and serves ADS on it', async () => {
    // Today's grpc-js bindAsync listens with Node's 511 whatever is asked.
    const { server, port } = await listening({}, { listen: '127.0.0.1:0', backlog: 37 });
    try {
      expect(await listenBacklogs(port)).toEqual([37]);
      await expectServesClusters(`127.0.0.1:${port}`);
    } finally {
      await server.shutdown(2_000);
    }
  });

  it('listens with 4096 (capped by net.core.somaxconn) when no backlog is configured', async () => {
    const { server, port } = await listening({}, { listen: '127.0.0.1:0' });
    try {
      expect(DEFAULT_TUNING.listenBacklog).toBe(4_096);
      expect(await listenBacklogs(port)).toEqual([Math.min(4_096, SOMAXCONN)]);
    } finally {
      await server.shutdown(2_000);
    }
  });

  it('warns when the kernel caps the backlog asked for, and listens with the cap', async () => {
    const lines: { level: number; msg: string; somaxconn?: number }[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as (typeof lines)[number]) });
    const server = new XdsServer(envoyApi, new SnapshotCache(), log);
    const port = await server.listen({ listen: '127.0.0.1:0', backlog: SOMAXCONN + 1 });
    try {
      expect(await listenBacklogs(port)).toEqual([SOMAXCONN]);
      expect(lines.find((l) => l.level === 40 && l.msg.includes('net.core.somaxconn'))?.somaxconn).toBe(SOMAXCONN);
    } finally {
      await server.shutdown(2_000);
    }
  });

  it('listens on every address a host name resolves to, on one port, as bindAsync did', async () => {
    const resolved = [...new Set((await lookup('localhost', { all: true })).map((a) => a.address))];
    const { server, port } = await listening({}, { listen: 'localhost:0', backlog: 41 });
    try {
      expect(await listenBacklogs(port)).toEqual(resolved.map(() => 41));
      await expectServesClusters(`localhost:${port}`);
    } finally {
      await server.shutdown(2_000);
    }
  });

  it('names the address when it is taken, and leaves nothing listening', async () => {
    const blocker = await occupiedPort();
    const taken = (blocker.address() as AddressInfo).port;
    const server = serverWithCatalog();
    try {
      const failure = await server.listen({ listen: `127.0.0.1:${taken}` }).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(failure).toBeInstanceOf(MeshbridgeError);
      expect((failure as MeshbridgeError).code).toBe('MB_CONFIG_INVALID');
      expect((failure as MeshbridgeError).message).toMatch(new RegExp(`^cannot listen for xDS on 127\\.0\\.0\\.1:${taken}: .*EADDRINUSE`));
      expect(server.port).toBeUndefined();
    } finally {
      await server.shutdown(1_000);
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it('names a host that does not resolve', async () => {
    const server = serverWithCatalog();
    await expect(server.listen({ listen: 'no-such-host.invalid:0' })).rejects.toThrow(/^cannot listen for xDS on no-such-host\.invalid:0: .*ENOTFOUND/);
    await server.shutdown(1_000);
  });

  it('stops accepting at shutdown, and ends a connection that never finished its TLS handshake', async () => {
    const ca = await createCa({ trustDomain: 'test.mesh' });
    const cert = await issueCertificate({ ca, usage: 'server', commonName: 'localhost', hosts: ['localhost', '127.0.0.1'] });
    const credentials = grpc.ServerCredentials.createSsl(Buffer.from(ca.certPem), [{ cert_chain: Buffer.from(cert.certPem), private_key: Buffer.from(cert.keyPem) }], false);
    const { server, port } = await listening({}, { listen: '127.0.0.1:0', credentials });
    // A peer that connects and never says hello: grpc-js sees no session, only a socket.
    const silent: Socket = connect(port, '127.0.0.1');
    await new Promise((resolve) => silent.once('connect', resolve));
    const silentClosed = new Promise((resolve) => silent.once('close', resolve));
    silent.on('error', () => undefined);
    await server.shutdown(60_000);
    await silentClosed;
    expect(await refusesConnections(port)).toBe(true);
  });
});

describe('TLS on meshbridge\'s own socket: grpc-js still does the handshake and sees the client certificate', () => {
  let server: XdsServer;
  let address: string;
  let ca: Buffer;
  let client: { cert: Buffer; key: Buffer };
  let foreign: { cert: Buffer; key: Buffer };
  const peerSubjects: string[] = [];
  const dir = tempDir('meshbridge-backlog-');
  let tlsFiles: ReloadingTlsFiles;

  beforeAll(async () => {
    const authority = await createCa({ trustDomain: 'test.mesh' });
    const other = await createCa({ trustDomain: 'test.mesh' });
    const serverCert = await issueCertificate({ ca: authority, usage: 'server', commonName: 'localhost', hosts: ['localhost', '127.0.0.1'] });
    const clientCert = await issueCertificate({ ca: authority, usage: 'client', commonName: 'vm-1', spiffeId: 'spiffe://test.mesh/node/vm-1' });
    const foreignCert = await issueCertificate({ ca: other, usage: 'client', commonName: 'vm-1', spiffeId: 'spiffe://test.mesh/node/vm-1' });
    ca = Buffer.from(authority.certPem);
    client = { cert: Buffer.from(clientCert.certPem), key: Buffer.from(clientCert.keyPem) };
    foreign = { cert: Buffer.from(foreignCert.certPem), key: Buffer.from(foreignCert.keyPem) };
    // What src/security/xds-guard.ts reads: the peer certificate in the call's auth context.
    const recordPeer: grpc.ServerInterceptor = (_method, call) =>
      new grpc.ServerInterceptingCall(call, {
        start: (next) => {
          peerSubjects.push(String(call.getAuthContext().sslPeerCertificate?.subject.CN ?? 'none'));
          next({});
        },
      });
    // As the daemon builds them: ask for a client certificate, refuse a bad one in the server.
    tlsFiles = new ReloadingTlsFiles(
      { certFile: dir.write('server.crt', serverCert.certPem), keyFile: dir.write('server.key', serverCert.keyPem), caFile: dir.write('ca.crt', authority.certPem) },
      60_000,
      silentLogger,
    );
    await tlsFiles.start();
    const credentials = reloadingServerCredentials(tlsFiles);
    server = serverWithCatalog({ interceptors: [recordPeer] });
    address = `127.0.0.1:${await server.listen({ listen: '127.0.0.1:0', credentials, requireVerifiedClientCertificate: true, backlog: 53 })}`;
  });
  afterAll(async () => {
    await server.shutdown(2_000);
    tlsFiles.stop();
    dir.remove();
  });

  it('listens with the backlog on the TLS port too', async () => {
    expect(await listenBacklogs(Number(address.split(':')[1]))).toEqual([53]);
  });

  it('serves a client whose certificate the CA signed, and the call sees that certificate', async () => {
    const stream = new SecureAdsStream(address, 'vm-1', { ca, ...client });
    const outcome = await stream.outcome(20_000);
    stream.close();
    expect(outcome.response?.resources.length).toBe(1);
    expect(peerSubjects).toContain('vm-1');
  });

  it('refuses, in the handshake, a certificate another CA signed, and counts it', async () => {
    const before = server.refusedHandshakes;
    const stream = new SecureAdsStream(address, 'vm-1', { ca, ...foreign });
    const outcome = await stream.outcome(20_000);
    stream.close();
    expect(outcome.response).toBeUndefined();
    expect(outcome.status?.code).toBe(grpc.status.UNAVAILABLE);
    await eventually(() => expect(server.refusedHandshakes).toBeGreaterThan(before));
  });
});

/** Opens `count` TCP connections to `port`; resolves with them and a live count of those the kernel has completed. */
function openConnections(port: number, count: number): { sockets: Socket[]; connected: () => number } {
  let connected = 0;
  const sockets = Array.from({ length: count }, () => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => (connected += 1));
    socket.on('error', () => undefined);
    return socket;
  });
  return { sockets, connected: () => connected };
}

describe('a fleet connecting at once while meshbridge cannot accept waits in the kernel\'s queue', () => {
  // The daemon is stopped (SIGSTOP): only the kernel answers, completing
  // handshakes until the accept queue is full and dropping SYNs past it, so
  // the connections that complete are the backlog the socket really has.
  const dir = tempDir('meshbridge-backlog-queue-');
  let daemon: DaemonProcess;
  let port: number;
  const opened: Socket[] = [];

  beforeAll(async () => {
    dir.write('a.yaml', '');
    dir.write('meshbridge.yaml', `xds: { listen: 127.0.0.1:0, listenBacklog: 1024 }\nadmin: { listen: 127.0.0.1:0 }\nregistries: [{ kind: file, name: f, paths: [./a.yaml] }]\n`);
    daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
    port = await daemon.xdsPort();
  });
  afterAll(async () => {
    for (const socket of opened) socket.destroy();
    daemon.signal('SIGCONT');
    await daemon.stop();
    dir.remove();
  });

  it('queues 600 connections (past Node\'s default 511) with listenBacklog 1024, and serves them once it runs again', async () => {
    daemon.signal('SIGSTOP');
    const fleet = openConnections(port, 600);
    opened.push(...fleet.sockets);
    // With a backlog of 511 this stops at 512, the rest waiting for SYN retransmits.
    await eventually(() => expect(fleet.connected()).toBe(600), 20_000);
    daemon.signal('SIGCONT');
    // Accepted and handed to HTTP/2: each connection is sent the server's SETTINGS frame.
    const greeted = await Promise.all(fleet.sockets.map((socket) => new Promise<boolean>((resolve) => {
      socket.once('data', () => resolve(true));
      socket.once('close', () => resolve(false));
    })));
    expect(greeted.filter(Boolean).length).toBe(600);
  }, 60_000);
});

describe('a queue of connections is accepted many per event-loop turn', () => {
  // Node 20 accepts one connection per descriptor per turn, and turns are long while a fleet is served.
  it('takes as many queued connections in one turn as it has descriptors of the one socket, not one', async () => {
    const acceptedInTurn: number[] = [];
    let turn = 0;
    const socket = await ListenSocket.open({ listen: '127.0.0.1:0', backlog: 1024, onConnection: (connection) => {
      acceptedInTurn.push(turn);
      connection.destroy();
    } }, silentLogger);
    try {
      expect(await listenBacklogs(socket.port)).toEqual([Math.min(1024, SOMAXCONN)]);
      // Another process makes 300 connections while this one is blocked in execFileSync: all 300 wait in the kernel's queue.
      const script = "const net = require('node:net'); let n = 0; for (let i = 0; i < 300; i++) net.connect(Number(process.argv[1]), '127.0.0.1', () => { if (++n === 300) process.exit(0); }).on('error', (e) => { console.error(e.message); process.exit(1); });";
      execFileSync(process.execPath, ['-e', script, String(socket.port)], { timeout: 30_000 });
      while (acceptedInTurn.length < 300 && turn < 1_000) {
        await new Promise((resolve) => setImmediate(resolve));
        turn += 1;
      }
      const perTurn = new Map<number, number>();
      for (const t of acceptedInTurn) perTurn.set(t, (perTurn.get(t) ?? 0) + 1);
      expect(acceptedInTurn).toHaveLength(300);
      expect(socket.descriptorsPerSocket).toBeGreaterThan(1);
      expect(Math.max(...perTurn.values())).toBe(Math.min(300, socket.descriptorsPerSocket));
    } finally {
      socket.stopAccepting();
    }
  });

  it('listens through a 64th of the open-files limit in descriptors, at most 256, and 16 where the limit cannot be read', () => {
    const dir = tempDir('meshbridge-limits-');
    try {
      const limits = (soft: string) => {
        dir.write('limits', `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}                524288               files\n`);
        return acceptDescriptors(`${dir.path}/limits`);
      };
      expect(limits('65536')).toBe(MAX_ACCEPT_DESCRIPTORS);
      expect(limits('unlimited')).toBe(MAX_ACCEPT_DESCRIPTORS);
      expect(limits('1024')).toBe(16);
      expect(limits('40')).toBe(1);
      expect(acceptDescriptors(`${dir.path}/missing`)).toBe(16);
    } finally {
      dir.remove();
    }
  });

  it('leaves no process holding the socket: once it stops accepting, connections are refused', async () => {
    const socket = await ListenSocket.open({ listen: '127.0.0.1:0', backlog: 64, onConnection: (connection) => connection.destroy() }, silentLogger);
    socket.stopAccepting();
    expect(await refusesConnections(socket.port)).toBe(true);
  });
});

describe('xds.listenBacklog in the config', () => {
  const registries = [{ kind: 'file', name: 'f', paths: ['a.yaml'] }];
  it('is the backlog the daemon\'s xDS port listens with', async () => {
    const dir = tempDir('meshbridge-backlog-daemon-');
    dir.write('a.yaml', '');
    dir.write('meshbridge.yaml', `xds: { listen: 127.0.0.1:0, listenBacklog: 77 }\nadmin: { listen: 127.0.0.1:0 }\nregistries: [{ kind: file, name: f, paths: [./a.yaml] }]\n`);
    const daemon = new DaemonProcess(['run', '--config', `${dir.path}/meshbridge.yaml`]);
    try {
      expect(await listenBacklogs(await daemon.xdsPort())).toEqual([77]);
    } finally {
      await daemon.stop();
      dir.remove();
    }
  });
  it('defaults to 4096', () => {
    expect(parseConfig({ registries }, 'm.yaml').config?.xds.listenBacklog).toBe(4_096);
  });
  it.each([
    ['zero', 0],
    ['negative', -5],
    ['fraction', 1.5],
    ['past 65535', 65_536],
    ['text', 'lots'],
  ])('refuses %s, naming the key', (_name, value) => {
    const { config, diagnostics } = parseConfig({ xds: { listenBacklog: value }, registries }, 'm.yaml');
    expect(config).toBeUndefined();
    expect(diagnostics.map((d) => d.field)).toContain('xds.listenBacklog');
  });
});
