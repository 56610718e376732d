// What reading one state-of-the-world ACK costs a Node server, by transport:
// grpc-js's Server (what meshbridge serves ADS with) against node:http2 with
// gRPC's 5-byte framing read by hand, once copying each message into a Buffer
// of its own (as grpc-js does) and once reading it in the chunks it came in. A SotW client repeats every EDS name
// it holds in each ACK (some 40 KB for 1,000 clusters), so after an endpoint
// change 2,000 clients send 80 MB, and the server's cost per message sets a
// floor under the time the next change waits. Nothing of meshbridge runs here:
// this measures the floor, not meshbridge.
//
//   node bench/ack-read.mjs [--clients 2000] [--bytes 40000] [--rounds 12] [--ballast 0]
//
// --ballast keeps that many small objects live in the receiving server: a
// collection then costs what it does in a daemon that holds a fleet's state.
import { fork } from 'node:child_process';
import http2 from 'node:http2';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';

const PATH = '/bench.Ack/Read';
const identity = (bytes) => bytes;
const role = process.argv[2];

if (role === 'server') {
  const [transport, expected, ballastCount] = [process.argv[3], Number(process.argv[4]), Number(process.argv[5])];
  const ballast = Array.from({ length: ballastCount }, (_, i) => ({ name: `object-${i}`, pair: [i, i + 1], inner: { i } }));
  let received = 0;
  let cpuAtFirst;
  // CPU from the first message of a round to the last, all threads (GC included).
  const onMessage = () => {
    if (received === 0) cpuAtFirst = process.cpuUsage();
    if (++received < expected) return;
    const cpu = process.cpuUsage(cpuAtFirst);
    received = 0;
    process.send({ kind: 'round', cpuMs: (cpu.user + cpu.system) / 1000, live: ballast.length });
  };
  let port;
  if (transport === 'grpc-js') {
    const server = new grpc.Server();
    const method = { path: PATH, requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity };
    server.addService({ read: method }, { read: (call) => call.on('data', onMessage).on('error', () => {}) });
    port = await new Promise((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))));
  } else {
    const assemble = transport === 'node:http2, copied';
    const server = http2.createServer();
    server.on('stream', (stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
      // Finds whole messages by their length prefixes; only the copied transport assembles each into a Buffer.
      let header = Buffer.alloc(0);
      let remaining = 0;
      let parts = [];
      stream.on('data', (chunk) => {
        let at = 0;
        while (at < chunk.length) {
          if (remaining === 0) {
            const take = Math.min(5 - header.length, chunk.length - at);
            header = Buffer.concat([header, chunk.subarray(at, at + take)]);
            at += take;
            if (header.length < 5) break;
            remaining = header.readUInt32BE(1);
            header = Buffer.alloc(0);
            if (remaining === 0) onMessage();
            continue;
          }
          const take = Math.min(remaining, chunk.length - at);
          if (assemble) parts.push(chunk.subarray(at, at + take));
          remaining -= take;
          at += take;
          if (remaining === 0) {
            if (assemble) {
              globalThis.lastMessage = Buffer.concat(parts);
              parts = [];
            }
            onMessage();
          }
        }
      });
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = server.address().port;
  }
  process.send({ kind: 'ready', port });
} else if (role === 'client') {
  const [port, clients, bytes] = process.argv.slice(3).map(Number);
  const message = Buffer.alloc(bytes, 7);
  // One connection per client, as each Envoy has its own.
  const calls = Array.from({ length: clients }, (_, i) =>
    new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1, 'bench.client': i })
      .makeBidiStreamRequest(PATH, identity, identity)
      .on('error', () => {}),
  );
  process.on('message', () => {
    for (const call of calls) call.write(message);
  });
  process.send({ kind: 'ready' });
} else {
  const { values } = parseArgs({ options: { clients: { type: 'string', default: '2000' }, bytes: { type: 'string', default: '40000' }, rounds: { type: 'string', default: '12' }, ballast: { type: 'string', default: '0' } } });
  const [clients, bytes, rounds, ballast] = [Number(values.clients), Number(values.bytes), Number(values.rounds), Number(values.ballast)];
  const workers = 4;
  const self = new URL(import.meta.url).pathname;
  const ready = (child) => new Promise((resolve) => child.once('message', resolve));
  // The first rounds warm the JIT and the connections' windows up.
  const warmup = rounds > 2 ? 2 : 0;
  console.log(`${clients} clients, one ${bytes}-byte message each per round, ${rounds} rounds (the first ${warmup} not counted); ${ballast} objects kept live in the server`);
  for (const transport of ['grpc-js', 'node:http2, copied', 'node:http2']) {
    const server = fork(self, ['server', transport, String(clients), String(ballast)]);
    const { port } = await ready(server);
    const senders = [];
    for (let i = 0; i < workers; i++) {
      const sender = fork(self, ['client', String(port), String(clients / workers), String(bytes)]);
      await ready(sender);
      senders.push(sender);
    }
    const cpu = [];
    for (let round = 0; round < rounds; round++) {
      const done = ready(server);
      for (const sender of senders) sender.send('send');
      const { cpuMs } = await done;
      if (round >= warmup) cpu.push(cpuMs);
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    for (const child of [server, ...senders]) child.kill();
    cpu.sort((a, b) => a - b);
    const perMessage = (ms) => ((ms * 1000) / clients).toFixed(0);
    console.log(`${transport.padEnd(18)} server CPU per message: median ${perMessage(cpu[Math.floor(cpu.length / 2)])} µs (${perMessage(cpu[0])}–${perMessage(cpu.at(-1))} µs over ${cpu.length} rounds)`);
  }
}
