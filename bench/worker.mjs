// One benchmark worker process: many simulated Envoys, each an ADS stream on
// its own connection, incremental (delta) or state of the world (SotW, Envoy's
// default and what every proxyless gRPC client speaks). They behave as Envoy
// does: CDS and LDS wildcard, EDS for every cluster received, RDS for the route
// names, and an ACK for every response. Responses are scanned, not decoded, so
// the clients cost little CPU beside the server under test.
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';

const TYPE = {
  cds: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  eds: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  lds: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  rds: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
};
const KIND = Object.fromEntries(Object.entries(TYPE).map(([k, v]) => [v, k]));
const SERVICE = '/envoy.service.discovery.v3.AggregatedDiscoveryService';
const PATH = { delta: `${SERVICE}/DeltaAggregatedResources`, sotw: `${SERVICE}/StreamAggregatedResources` };
const now = () => performance.timeOrigin + performance.now();

// --- protobuf, by hand: the few fields a delta client needs ---
function varint(n, out) {
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
}
function field(num, value, out) {
  const bytes = typeof value === 'string' ? Buffer.from(value) : value;
  varint((num << 3) | 2, out);
  varint(bytes.length, out);
  for (const b of bytes) out.push(b);
}
/** google.protobuf.Struct: fields=1 (map entry key=1, value=2); Value: string_value=3, struct_value=5. */
function struct(entries) {
  const out = [];
  for (const [key, value] of Object.entries(entries)) {
    const v = [];
    if (typeof value === 'string') field(3, value, v);
    else field(5, struct(value), v);
    const entry = [];
    field(1, key, entry);
    field(2, Buffer.from(v), entry);
    field(1, Buffer.from(entry), out);
  }
  return Buffer.from(out);
}
/** Node: id=1 cluster=2 metadata=3 user_agent_name=6; a scoped client's labels as Istio's metadata LABELS. */
function nodeField(num, id, out) {
  const n = [];
  field(1, id, n);
  field(2, 'bench', n);
  if (scope) field(3, struct({ LABELS: { group: String(groupOf(id)) } }), n);
  field(6, 'envoy', n);
  field(num, Buffer.from(n), out);
}
/** DeltaDiscoveryRequest: node=1, type_url=2, subscribe=3, initial_resource_versions=5 (key=1, value=2), response_nonce=6. One part. */
function deltaRequest({ node, typeUrl, subscribe = [], initial, nonce }) {
  const out = [];
  if (node) nodeField(1, node, out);
  field(2, typeUrl, out);
  for (const name of subscribe) field(3, name, out);
  for (const [name, version] of initial ?? []) {
    const entry = [];
    field(1, name, entry);
    field(2, version, entry);
    field(5, Buffer.from(entry), out);
  }
  if (nonce) field(6, nonce, out);
  return [Buffer.from(out)];
}
/**
 * The resource_names fields of a name list, encoded once per list: a SotW
 * client repeats its 1,000 EDS names (some 40 KB) in every ACK, and encoding
 * them byte by byte for every ACK of 2,000 clients made the clients, which
 * share the machine's cores with the server, what a change waited for. Keyed
 * by the collection, which a SotW client replaces rather than changes.
 */
const encodedNames = new WeakMap();
function namesRun(names) {
  let run = encodedNames.get(names);
  if (run === undefined) {
    const out = [];
    for (const name of names) field(3, name, out);
    run = Buffer.from(out);
    encodedNames.set(names, run);
  }
  return run;
}
/**
 * DiscoveryRequest: version_info=1, node=2, resource_names=3, type_url=4, response_nonce=5.
 * In parts, so the encoded names are written as they are, not copied into each request.
 */
function sotwRequest({ node, typeUrl, names = [], version, nonce }) {
  const head = [];
  if (version) field(1, version, head);
  if (node) nodeField(2, node, head);
  const tail = [];
  field(4, typeUrl, tail);
  if (nonce) field(5, nonce, tail);
  return [Buffer.from(head), namesRun(names), Buffer.from(tail)];
}
function readVarint(buf, pos) {
  let result = 0;
  let shift = 1;
  for (;;) {
    const b = buf[pos++];
    result += (b & 0x7f) * shift;
    if (b < 0x80) return [result, pos];
    shift *= 128;
  }
}
/** Calls fn(fieldNumber, start, end) for each length-delimited field; skips the others. */
function scan(buf, start, end, fn) {
  let pos = start;
  while (pos < end) {
    let key;
    [key, pos] = readVarint(buf, pos);
    const wire = key & 7;
    if (wire === 2) {
      let len;
      [len, pos] = readVarint(buf, pos);
      fn(key >>> 3, pos, pos + len);
      pos += len;
    } else if (wire === 0) [, pos] = readVarint(buf, pos);
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else throw new Error(`wire type ${wire}`);
  }
}
/** DeltaDiscoveryResponse: resources=2 (Resource: version=1, name=3), type_url=4, nonce=5, removed_resources=6. */
function parseDelta(buf) {
  const r = { names: [], versions: [], removed: [], typeUrl: '', nonce: '' };
  scan(buf, 0, buf.length, (num, s, e) => {
    if (num === 2)
      scan(buf, s, e, (n, rs, re) => {
        if (n === 3) r.names.push(buf.toString('utf8', rs, re));
        else if (n === 1) r.versions.push(buf.toString('utf8', rs, re));
      });
    else if (num === 4) r.typeUrl = buf.toString('utf8', s, e);
    else if (num === 5) r.nonce = buf.toString('utf8', s, e);
    else if (num === 6) r.removed.push(buf.toString('utf8', s, e));
  });
  return r;
}

/**
 * DiscoveryResponse: version_info=1, resources=2 (Any: value=2), type_url=4, nonce=5. Every
 * resource type the bench serves (Cluster, ClusterLoadAssignment, Listener,
 * RouteConfiguration) has its name in field 1.
 */
function parseSotw(buf) {
  const r = { names: [], typeUrl: '', nonce: '', version: '' };
  scan(buf, 0, buf.length, (num, s, e) => {
    if (num === 1) r.version = buf.toString('utf8', s, e);
    else if (num === 2)
      scan(buf, s, e, (n, vs, ve) => {
        if (n !== 2) return;
        let name;
        scan(buf, vs, ve, (m, ns, ne) => m === 1 && name === undefined && (name = buf.toString('utf8', ns, ne)));
        if (name !== undefined) r.names.push(name);
      });
    else if (num === 4) r.typeUrl = buf.toString('utf8', s, e);
    else if (num === 5) r.nonce = buf.toString('utf8', s, e);
  });
  return r;
}

// --- the gRPC stream, over one of two stacks ---
// http2: gRPC's framing written by hand over node:http2, one connection per client. What a client costs here is
// the harness's, not the fleet's (each Envoy has its own machine), and on the benchmark's two cores it is taken
// from the server: grpc-js copied every 40 KB SotW ACK twice and ran each response through its interceptor
// chain, which cost the four client processes more CPU per change than the server under test.
// grpc-js: the same requests through @grpc/grpc-js, as the benchmark ran before; kept to compare the two.

/** One ADS stream: `write(parts)` sends one request made of `parts`; `onMessage` gets each response; `onEnd` once, with why, unless closed. */
function grpcJsStream(address, path, onMessage, onEnd) {
  const channel = new grpc.Client(address, grpc.credentials.createInsecure(), {
    'grpc.use_local_subchannel_pool': 1,
    'grpc.max_receive_message_length': -1,
  });
  const call = channel.makeBidiStreamRequest(path, (b) => b, (b) => b);
  let closed = false;
  call.on('data', onMessage);
  call.on('error', (error) => closed || onEnd(error.message));
  return {
    write: (parts) => call.write(Buffer.concat(parts)),
    close: () => {
      closed = true;
      call.end();
      channel.close();
    },
  };
}

function http2Stream(address, path, onMessage, onEnd) {
  let ended = false;
  const end = (why) => {
    if (ended) return;
    ended = true;
    session.destroy();
    onEnd(why);
  };
  // As grpc-js sets it: Node's default 10 MB of session memory is less than a storm's responses can hold at once.
  const session = http2.connect(`http://${address}`, { maxSessionMemory: Number.MAX_SAFE_INTEGER });
  session.on('error', (error) => end(error.message));
  session.on('close', () => end('connection closed'));
  const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
  let status;
  const statusOf = (headers) => headers['grpc-status'] !== undefined && (status = `status ${headers['grpc-status']}: ${headers['grpc-message'] ?? ''}`);
  stream.on('response', statusOf);
  stream.on('trailers', statusOf);
  stream.on('error', (error) => end(error.message));
  stream.on('close', () => end(status ?? 'stream closed without a status'));
  // Responses are framed as gRPC frames them: a compressed flag, a 4-byte length, the message.
  let pending = [];
  let pendingBytes = 0;
  stream.on('data', (chunk) => {
    pending.push(chunk);
    pendingBytes += chunk.length;
    while (pendingBytes >= 5) {
      if (pending[0].length < 5) pending = [Buffer.concat(pending)];
      const length = pending[0].readUInt32BE(1);
      if (pendingBytes < 5 + length) return;
      const all = pending.length === 1 ? pending[0] : Buffer.concat(pending);
      const rest = all.subarray(5 + length);
      pending = rest.length > 0 ? [rest] : [];
      pendingBytes = rest.length;
      onMessage(all.subarray(5, 5 + length));
    }
  });
  return {
    write: (parts) => {
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(parts.reduce((n, part) => n + part.length, 0), 1);
      stream.cork();
      stream.write(prefix);
      for (const part of parts) stream.write(part);
      stream.uncork();
    },
    close: () => {
      ended = true;
      stream.end();
      session.close();
    },
  };
}

// --- the simulated fleet ---
// failover: a client whose stream breaks reconnects to the next address, as
// Envoy does with several control-plane hosts, telling it what it already has.
// scope: each client's Sidecar group, and what that group's view holds (resource counts, route names).
const { addresses, ids, routeNames: allRouteNames, expected: fullExpected, protocol, failover, scope, stack } = JSON.parse(process.argv[2]);
const openStream = stack === 'grpc-js' ? grpcJsStream : http2Stream;
const groupOf = (id) => Number(id.slice(id.lastIndexOf('-') + 1)) % scope.groups;
let bytes = 0;
let responses = 0;
let armed;
const clients = [];

class Client {
  constructor(id, addressIndex) {
    this.id = id;
    this.addressIndex = addressIndex;
    this.have = { cds: new Set(), eds: new Set(), lds: new Set(), rds: new Set() };
    /** Delta: the version of every resource held; SotW: the last version_info per type. Kept only for failover. */
    this.versions = { cds: new Map(), eds: new Map(), lds: new Map(), rds: new Map() };
    this.sotwVersion = {};
    this.stopping = false;
    this.edsSubscribed = new Set();
    this.rdsSubscribed = false;
    this.completeAt = undefined;
    this.changedAt = undefined;
    this.expected = scope ? scope.expected[groupOf(id)] : fullExpected;
    this.routeNames = scope ? scope.routeNames[groupOf(id)] : allRouteNames;
  }

  connect() {
    const call = openStream(
      addresses[this.addressIndex],
      PATH[protocol],
      (buf) => (protocol === 'sotw' ? this.onSotw(buf) : this.onDelta(buf)),
      (message) => {
        if (this.stopping || call !== this.call) return;
        if (!failover && !this.served) {
          // Never served (the connection was refused or timed out, as when thousands connect at once past the
          // server's listen backlog): Envoy retries with a backoff, and so does this client, counted apart from errors.
          connectRetries += 1;
          call.close();
          setTimeout(() => this.stopping || this.connect(), 500 + Math.random() * 1_000);
          return;
        }
        if (!failover) {
          process.send({ kind: 'error', id: this.id, message });
          return;
        }
        reconnects += 1;
        call.close();
        this.addressIndex = (this.addressIndex + 1) % addresses.length;
        this.connect();
      },
    );
    this.call = call;
    const resuming = this.have.cds.size > 0;
    if (protocol === 'sotw') {
      this.call.write(sotwRequest({ node: this.id, typeUrl: TYPE.cds, version: this.sotwVersion.cds }));
      this.call.write(sotwRequest({ typeUrl: TYPE.lds, version: this.sotwVersion.lds }));
      if (resuming) {
        this.call.write(sotwRequest({ typeUrl: TYPE.eds, names: this.edsSubscribed, version: this.sotwVersion.eds }));
        this.call.write(sotwRequest({ typeUrl: TYPE.rds, names: this.routeNames, version: this.sotwVersion.rds }));
      }
    } else {
      this.call.write(deltaRequest({ node: this.id, typeUrl: TYPE.cds, initial: this.versions.cds }));
      this.call.write(deltaRequest({ typeUrl: TYPE.lds, initial: this.versions.lds }));
      if (resuming) {
        this.call.write(deltaRequest({ typeUrl: TYPE.eds, subscribe: [...this.edsSubscribed], initial: this.versions.eds }));
        this.call.write(deltaRequest({ typeUrl: TYPE.rds, subscribe: this.routeNames, initial: this.versions.rds }));
      }
    }
  }

  onDelta(buf) {
    const r = parseDelta(buf);
    const kind = KIND[r.typeUrl];
    this.call.write(deltaRequest({ typeUrl: r.typeUrl, nonce: r.nonce }));
    const have = this.have[kind];
    for (const name of r.names) have.add(name);
    for (const name of r.removed) have.delete(name);
    if (failover) {
      const versions = this.versions[kind];
      r.names.forEach((name, i) => versions.set(name, r.versions[i] ?? ''));
      for (const name of r.removed) versions.delete(name);
    }
    if (kind === 'cds') {
      const fresh = r.names.filter((n) => !this.edsSubscribed.has(n));
      for (const n of fresh) this.edsSubscribed.add(n);
      if (fresh.length > 0) this.call.write(deltaRequest({ typeUrl: TYPE.eds, subscribe: fresh }));
    } else if (kind === 'lds' && !this.rdsSubscribed) {
      this.rdsSubscribed = true;
      this.call.write(deltaRequest({ typeUrl: TYPE.rds, subscribe: this.routeNames }));
    }
    this.observe(buf.length, kind, r.names);
  }

  /** State of the world: each response replaces the type's whole set; EDS and RDS name what they want. */
  onSotw(buf) {
    const r = parseSotw(buf);
    const kind = KIND[r.typeUrl];
    this.have[kind] = new Set(r.names);
    this.sotwVersion[kind] = r.version;
    if (kind === 'cds') {
      const wanted = [...this.have.cds].sort();
      const changed = wanted.length !== this.edsSubscribed.size || wanted.some((n) => !this.edsSubscribed.has(n));
      this.call.write(sotwRequest({ typeUrl: r.typeUrl, version: r.version, nonce: r.nonce }));
      if (changed) {
        this.edsSubscribed = new Set(wanted);
        this.call.write(sotwRequest({ typeUrl: TYPE.eds, names: wanted, version: this.edsVersion, nonce: this.edsNonce }));
      }
    } else if (kind === 'eds') {
      this.edsVersion = r.version;
      this.edsNonce = r.nonce;
      this.call.write(sotwRequest({ typeUrl: r.typeUrl, names: this.edsSubscribed, version: r.version, nonce: r.nonce }));
    } else if (kind === 'lds') {
      this.call.write(sotwRequest({ typeUrl: r.typeUrl, version: r.version, nonce: r.nonce }));
      if (!this.rdsSubscribed) {
        this.rdsSubscribed = true;
        this.call.write(sotwRequest({ typeUrl: TYPE.rds, names: this.routeNames }));
      }
    } else {
      this.call.write(sotwRequest({ typeUrl: r.typeUrl, names: this.routeNames, version: r.version, nonce: r.nonce }));
    }
    this.observe(buf.length, kind, r.names);
  }

  /** Counts bytes, and notes when this client has everything, and when it has the armed change. */
  observe(length, kind, names) {
    this.served = true;
    bytes += length;
    responses += 1;
    if (scope && !this.overScope && this.have[kind].size > this.expected[kind]) {
      // A scoped client given more than its Sidecar declares: the scope did not hold, which the run reports as an error.
      this.overScope = true;
      process.send({ kind: 'error', id: this.id, message: `${kind}: ${this.have[kind].size} resources, scope has ${this.expected[kind]}` });
    }
    if (kind === 'eds' && armed !== undefined && this.changedAt === undefined && names.includes(armed.name)) {
      this.changedAt = now();
      armed.left -= 1;
      armed.last = Math.max(armed.last, this.changedAt);
      if (armed.left === 0) process.send({ kind: 'changed', k: armed.k, at: armed.last });
    }
    if (this.completeAt === undefined && Object.entries(this.expected).every(([k, n]) => this.have[k].size >= n)) {
      this.completeAt = now();
      completed += 1;
      lastComplete = Math.max(lastComplete, this.completeAt);
      if (completed === clients.length) process.send({ kind: 'complete', at: lastComplete });
    }
  }
}

let completed = 0;
let lastComplete = 0;
let reconnects = 0;
let connectRetries = 0;
process.on('message', (message) => {
  if (message.kind === 'connect') {
    for (const id of ids) {
      const client = new Client(id, Number(id.slice(id.lastIndexOf('-') + 1)) % addresses.length);
      clients.push(client);
      client.connect();
    }
  } else if (message.kind === 'arm') {
    for (const client of clients) client.changedAt = undefined;
    armed = { k: message.k, name: message.name, left: clients.length, last: 0 };
    process.send({ kind: 'armed', k: message.k });
  } else if (message.kind === 'stats') {
    process.send({ kind: 'stats', bytes, responses, completed, reconnects, connectRetries, waiting: armed?.left ?? 0 });
  } else if (message.kind === 'stop') {
    for (const client of clients) {
      client.stopping = true;
      client.call.close();
    }
    setTimeout(() => process.exit(0), 200);
  }
});
process.send({ kind: 'ready' });
if (process.env.BENCH_DEBUG) {
  setInterval(() => console.error(`worker ${process.pid}: ${completed}/${clients.length} complete, ${(bytes / 2 ** 20).toFixed(1)} MiB, ${responses} responses`), 5_000).unref();
  // The last few clients of a storm, and what each lacks: one never served waited in the kernel, not in meshbridge.
  setInterval(() => {
    const late = clients.filter((c) => c.completeAt === undefined);
    if (late.length === 0 || late.length > 50) return;
    for (const c of late.slice(0, 5)) console.error(`late ${c.id}: served ${c.served === true}, ${Object.entries(c.have).map(([k, s]) => `${k} ${s.size}/${c.expected[k]}`).join(', ')}`);
  }, 2_000).unref();
}
