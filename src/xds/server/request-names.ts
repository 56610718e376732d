import { createHash } from 'node:crypto';

/**
 * A state-of-the-world client repeats every name it subscribes to in every
 * request, ACKs included: an Envoy with a thousand clusters sends a thousand
 * EDS names (some 40 KB) after every endpoint change, and decoding them into
 * strings for two thousand clients was most of what a change cost. The
 * request is read in two parts instead: the names' bytes are hashed, not
 * decoded, and decoded only if a stream reads `resource_names` (it does when
 * the hash differs from the previous request's, or for its first request).
 */
export interface NamesDigested {
  /** SHA-256 of the request's resource_names fields, as sent; undefined when they could not be told apart cheaply. */
  readonly resourceNamesDigest?: string;
}

const RESOURCE_NAMES = 3;
const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

function readVarint(bytes: Buffer, offset: number): [value: number, next: number] {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (offset >= bytes.length) throw new RangeError('truncated varint');
    const byte = bytes[offset++]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return [value, offset];
    scale *= 128;
  }
  throw new RangeError('varint too long');
}

/**
 * Walks the fields of an encoded message between `start` and `end`, calling
 * `visit` with each field's number, wire type, where it starts, where a
 * length-delimited value starts, and where it ends. Returns false, at once,
 * if the bytes cannot be walked or `visit` returns false.
 */
function eachField(
  bytes: Buffer,
  start: number,
  end: number,
  visit: (field: number, wire: number, fieldStart: number, valueStart: number, fieldEnd: number) => boolean,
): boolean {
  let offset = start;
  try {
    while (offset < end) {
      const fieldStart = offset;
      const [key, afterKey] = readVarint(bytes, offset);
      const wire = key % 8;
      let valueStart = afterKey;
      if (wire === WIRE_LEN) {
        const [length, afterLength] = readVarint(bytes, afterKey);
        valueStart = afterLength;
        offset = afterLength + length;
      } else if (wire === WIRE_VARINT) offset = readVarint(bytes, afterKey)[1];
      else if (wire === WIRE_FIXED64) offset = afterKey + 8;
      else if (wire === WIRE_FIXED32) offset = afterKey + 4;
      else return false;
      if (offset > end) return false;
      if (!visit(Math.floor(key / 8), wire, fieldStart, valueStart, offset)) return false;
    }
  } catch {
    return false;
  }
  return true;
}

/**
 * Where the resource_names fields of an encoded DiscoveryRequest lie, if they
 * form one run (as every encoder writes a repeated field): [start, end), or
 * undefined when the message cannot be walked or they are interleaved with
 * other fields. An empty run is [0, 0).
 */
export function resourceNamesRun(bytes: Buffer): [start: number, end: number] | undefined {
  let start = -1;
  let end = -1;
  const walked = eachField(bytes, 0, bytes.length, (field, wire, fieldStart, _valueStart, fieldEnd) => {
    if (field !== RESOURCE_NAMES) return true;
    if (wire !== WIRE_LEN) return false;
    if (start === -1) start = fieldStart;
    else if (end !== fieldStart) return false; // another field in between
    end = fieldEnd;
    return true;
  });
  if (!walked) return undefined;
  return start === -1 ? [0, 0] : [start, end];
}

/**
 * Where resource_names would begin in an encoded DiscoveryRequest that
 * writes its fields in order (every encoder does): after version_info and
 * node. Undefined if those cannot be walked.
 */
function namesStart(bytes: Buffer): number | undefined {
  let start = bytes.length;
  const walked = eachField(bytes, 0, bytes.length, (field, _wire, fieldStart) => {
    if (field < RESOURCE_NAMES) return true;
    start = fieldStart;
    return false;
  });
  return walked || start < bytes.length ? start : undefined;
}

/** Whether the fields from `offset` on can be walked and hold no resource_names. */
function noNamesFrom(bytes: Buffer, offset: number): boolean {
  return eachField(bytes, offset, bytes.length, (field) => field !== RESOURCE_NAMES);
}

export function sha256Digest(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('base64');
}

export interface RecentNameRunsLimits {
  /** Distinct runs remembered. */
  readonly maxRuns: number;
  /** Bytes of all runs remembered together; a run larger than this alone is never remembered. */
  readonly maxBytes: number;
}

/** Enough for every view's EDS names of a large fleet to stay remembered, at most 8 MiB. */
export const RECENT_NAME_RUNS: RecentNameRunsLimits = { maxRuns: 32, maxBytes: 8 * 1024 * 1024 };

/**
 * The digests of the last few distinct resource-name runs, with a copy of
 * their bytes. After an endpoint change every SotW client of a view ACKs with
 * the same 1,000 EDS names; hashing 40 KB for each of 2,000 ACKs was the
 * largest part of reading them. Comparing the bytes with a remembered run
 * (most recent first, length first) costs a memcmp, and its digest is reused.
 * A digest is still what streams keep, so a stream costs no more memory
 * whether or not its run is remembered, and a client that sends new names
 * every time costs what it did before (a hash) and a copy of them.
 */
export class RecentNameRuns {
  /** Most recently used first. */
  private readonly runs: { readonly bytes: Buffer; readonly digest: string }[] = [];
  private bytes = 0;

  constructor(
    private readonly limits: RecentNameRunsLimits = RECENT_NAME_RUNS,
    private readonly digestOf: (bytes: Buffer) => string = sha256Digest,
  ) {}

  /** The run's digest, and bytes equal to it that are not `run`'s: remembered ones, or a copy when it is too large to remember. */
  kept(run: Buffer): { digest: string; bytes: Buffer } {
    const index = this.runs.findIndex((known) => known.bytes.length === run.length && known.bytes.equals(run));
    if (index !== -1) return { digest: this.used(index), bytes: this.runs[0]!.bytes };
    return this.remember(run);
  }

  /**
   * The end and digest of a remembered run found whole at `start` of an
   * encoded request, followed by no more names: an ACK repeating the names
   * of the request before it is recognised by one comparison of its bytes,
   * without walking a thousand fields to find where the names end. A
   * remembered run is made of whole fields, so a message holding its bytes
   * at `start` is walked through them exactly as the run was.
   */
  knownAt(bytes: Buffer, start: number): { end: number; digest: string; bytes: Buffer } | undefined {
    const index = this.runs.findIndex((known) => {
      const end = start + known.bytes.length;
      return end <= bytes.length && known.bytes.compare(bytes, start, end) === 0 && noNamesFrom(bytes, end);
    });
    if (index === -1) return undefined;
    const run = this.runs[index]!;
    return { end: start + run.bytes.length, digest: this.used(index), bytes: run.bytes };
  }

  private used(index: number): string {
    const known = this.runs[index]!;
    if (index > 0) {
      this.runs.splice(index, 1);
      this.runs.unshift(known);
    }
    return known.digest;
  }

  private remember(run: Buffer): { digest: string; bytes: Buffer } {
    const digest = this.digestOf(run);
    // A copy: the run is a slice of the message as read, which must not stay alive for it, and may be a buffer read into again.
    const copy = Buffer.allocUnsafeSlow(run.length);
    run.copy(copy);
    if (run.length > this.limits.maxBytes) return { digest, bytes: copy };
    this.runs.unshift({ bytes: copy, digest });
    this.bytes += copy.length;
    while (this.runs.length > this.limits.maxRuns || this.bytes > this.limits.maxBytes) this.bytes -= this.runs.pop()!.bytes.length;
    return { digest, bytes: copy };
  }
}

/**
 * Wraps a DiscoveryRequest deserializer: everything but resource_names is
 * decoded as before; resource_names is decoded when first read, and
 * `resourceNamesDigest` says whether it changed without reading it. Each
 * wrapper (one per server) remembers its own recent runs. The request keeps
 * nothing of `bytes`, which may be a buffer read into again as soon as it
 * returns (in-place-requests.ts).
 */
export function withLazyResourceNames<T extends { resource_names: string[] }>(decode: (bytes: Buffer) => T, recent = new RecentNameRuns()): (bytes: Buffer) => T & NamesDigested {
  return (bytes) => {
    const start = namesStart(bytes);
    const known = start === undefined ? undefined : recent.knownAt(bytes, start);
    const run = known !== undefined ? ([start!, known.end] as const) : resourceNamesRun(bytes);
    if (run === undefined || run[1] - run[0] < LAZY_FROM_BYTES) return decode(detached(bytes));
    const [runStart, end] = run;
    const names = known ?? recent.kept(bytes.subarray(runStart, end));
    const request = decode(Buffer.concat([bytes.subarray(0, runStart), bytes.subarray(end)]));
    let decoded: string[] | undefined;
    Object.defineProperty(request, 'resource_names', {
      enumerable: true,
      configurable: true,
      get: () => (decoded ??= decodeNames(names.bytes)),
    });
    Object.defineProperty(request, 'resourceNamesDigest', { enumerable: false, value: names.digest });
    return request as T & NamesDigested;
  };
}

/**
 * A copy of `bytes` for a decoder that may keep views of its input (protobufjs
 * keeps a bytes field, such as an error_detail's Any, as a view). Small
 * requests, nearly all of those copied, come from Node's shared pool.
 */
function detached(bytes: Buffer): Buffer {
  return Buffer.from(bytes);
}

/** Below this, decoding the names costs less than hashing them and copying the rest. */
const LAZY_FROM_BYTES = 1024;

/** The strings of a run of resource_names fields (checked by `resourceNamesRun`). */
function decodeNames(run: Buffer): string[] {
  const names: string[] = [];
  eachField(run, 0, run.length, (_field, _wire, _fieldStart, valueStart, fieldEnd) => {
    names.push(run.toString('utf8', valueStart, fieldEnd));
    return true;
  });
  return names;
}

/** What the delta deserializer adds: `initial_resource_versions` as a Map, read without building an object of a thousand keys. */
export interface VersionsRead {
  readonly initialVersions?: ReadonlyMap<string, string>;
}

const INITIAL_RESOURCE_VERSIONS = 5;

/**
 * Wraps a DeltaDiscoveryRequest deserializer: a client moving from another
 * replica lists every resource it holds in `initial_resource_versions`, a
 * thousand clusters and a thousand endpoint sets each, and a thousand clients
 * do so at once. Decoding that map into an object and then its entries was
 * a third of what a failover cost the surviving replica; its entries are read
 * here straight into `initialVersions`, and the rest is decoded as before.
 * Anything that cannot be walked is left to the wrapped deserializer.
 */
export function withMapOfInitialVersions<T extends { initial_resource_versions: { [name: string]: string } }>(decode: (bytes: Buffer) => T): (bytes: Buffer) => T & VersionsRead {
  return (bytes) => {
    const versions = new Map<string, string>();
    const rest: Buffer[] = [];
    let listed = false;
    const walked = eachField(bytes, 0, bytes.length, (field, wire, fieldStart, valueStart, fieldEnd) => {
      if (field !== INITIAL_RESOURCE_VERSIONS) {
        rest.push(bytes.subarray(fieldStart, fieldEnd));
        return true;
      }
      listed = true;
      return wire === WIRE_LEN && readMapEntry(bytes, valueStart, fieldEnd, versions);
    });
    if (!walked || !listed) return decode(detached(bytes));
    const request = decode(Buffer.concat(rest));
    Object.defineProperty(request, 'initialVersions', { enumerable: false, value: versions });
    return request as T & VersionsRead;
  };
}

/** One map<string, string> entry (key = 1, value = 2; either may be missing, meaning empty) into `into`; false if it is not one. */
function readMapEntry(bytes: Buffer, start: number, end: number, into: Map<string, string>): boolean {
  let key = '';
  let value = '';
  const walked = eachField(bytes, start, end, (field, wire, _fieldStart, valueStart, fieldEnd) => {
    if (wire !== WIRE_LEN || (field !== 1 && field !== 2)) return false;
    const text = bytes.toString('utf8', valueStart, fieldEnd);
    if (field === 1) key = text;
    else value = text;
    return true;
  });
  if (walked) into.set(key, value);
  return walked;
}
