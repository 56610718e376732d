import type { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { callLayer } from './grpc-call-layers.js';

/** gRPC's length-prefixed message header: a compressed flag and a 32-bit big-endian length. */
const HEADER_BYTES = 5;
/** grpc-js's own default, which meshbridge does not change. */
const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
/**
 * Pieces of one message kept apart before they are joined into one Buffer: a
 * client that sends a 4 MiB message in one-byte DATA frames would otherwise
 * leave four million Buffer objects to gather.
 */
const MAX_PIECES = 64;

/** The layer of a grpc-js server call that reads the HTTP/2 stream, as far as this module depends on it. */
interface ReadingLayer {
  stream: EventEmitter & { resume(): void; destroyed?: boolean };
  decoder: { readState: number };
  readQueue: unknown[];
  incomingEncoding: string;
  receivedHalfClose: boolean;
  maxReceiveMessageSize: number;
}

function readingLayerOf(call: unknown): ReadingLayer | undefined {
  const layer = callLayer<Partial<ReadingLayer>>(call, (fields) => fields['stream'] !== undefined && fields['decoder'] !== undefined);
  const usable =
    layer !== undefined &&
    typeof layer.stream?.on === 'function' &&
    typeof layer.decoder?.readState === 'number' &&
    Array.isArray(layer.readQueue) &&
    typeof layer.incomingEncoding === 'string' &&
    typeof layer.receivedHalfClose === 'boolean' &&
    typeof layer.maxReceiveMessageSize === 'number';
  return usable ? (layer as ReadingLayer) : undefined;
}

/** grpc-js's StreamDecoder between messages (ReadState.NO_DATA). */
const DECODER_BETWEEN_MESSAGES = 0;

/**
 * Reading an ADS stream's requests where they arrive, instead of through
 * grpc-js.
 *
 * grpc-js copies every message it receives into a Buffer of its own before a
 * handler sees it. After an endpoint change, 2,000 state-of-the-world clients
 * each ACK with every EDS name they hold (some 40 KB), and 80 MB of Buffers
 * made in one burst set V8's collector off: about two mark-compacts per
 * change, started for "external memory pressure" while the heap itself was
 * far from its limit. That was most of the CPU a change cost, and it is why
 * the last client heard of a change some 500 ms after it was made. With a
 * daemon-sized heap, reading a 40 KB message in place costs about 35 µs;
 * copied into a Buffer of its own, about 800 µs (`npm run bench:ack-read`).
 *
 * So once a stream's first request has passed through grpc-js (and through
 * every interceptor: the guard checks the node it names against the caller's
 * identity), meshbridge reads the rest of its requests from the HTTP/2 stream
 * itself: a message that lies in one chunk is read where it lies, one split
 * across chunks is gathered in one scratch buffer that every stream of the
 * server reuses, and each is decoded and handled before the next is read.
 * Deserializers used here must therefore keep nothing of the bytes they are
 * given (request-names.ts copies what it keeps). grpc-js still owns the call:
 * its status, trailers, half-close, cancellation and writes.
 *
 * Taking over reads grpc-js's private fields (1.14); when they are not what
 * this expects, or the moment is not one where grpc-js holds no part of a
 * message, nothing is changed and grpc-js keeps reading, as before.
 */
export class InPlaceRequests {
  /** Where a message split across chunks is gathered; grown as needed, shared by the server's streams. */
  private scratch = Buffer.alloc(64 * 1024);
  private taken = 0;

  /** Streams whose requests are read in place: for tests. */
  get streamsTaken(): number {
    return this.taken;
  }

  /**
   * Starts reading `call`'s requests in place, handing each to `onRequest`
   * decoded with `deserialize`, if it can be done without losing a byte.
   * Returns what stops reading (a refused stream's further requests are not
   * read), or undefined when grpc-js keeps reading.
   */
  takeOver(call: unknown, deserialize: (bytes: Buffer) => unknown, onRequest: (request: unknown) => void): (() => void) | undefined {
    const layer = readingLayerOf(call);
    if (layer === undefined) return undefined;
    const { stream } = layer;
    // grpc-js must hold no part of a message, and nothing undelivered; a compressed stream stays with grpc-js, which inflates it.
    if (layer.decoder.readState !== DECODER_BETWEEN_MESSAGES || layer.readQueue.length > 0 || layer.receivedHalfClose) return undefined;
    if (layer.incomingEncoding !== 'identity' || stream.destroyed === true || stream.listenerCount('data') !== 1) return undefined;
    const maxBytes = layer.maxReceiveMessageSize === -1 ? DEFAULT_MAX_MESSAGE_BYTES : layer.maxReceiveMessageSize;
    const stop = () => {
      stream.removeListener('data', read);
    };
    const fail = (code: grpc.status, details: string) => {
      stop();
      (call as EventEmitter).emit('error', { code, details });
    };
    const read = this.reader(maxBytes, deserialize, onRequest, fail);
    stream.removeListener('data', stream.listeners('data')[0] as (chunk: Buffer) => void);
    stream.on('data', read);
    stream.resume();
    this.taken += 1;
    return stop;
  }

  /** A 'data' listener that reads gRPC messages from the chunks of one HTTP/2 stream. */
  private reader(
    maxBytes: number,
    deserialize: (bytes: Buffer) => unknown,
    onRequest: (request: unknown) => void,
    fail: (code: grpc.status, details: string) => void,
  ): (chunk: Buffer) => void {
    const header = Buffer.alloc(HEADER_BYTES);
    let headerHave = 0;
    /** Bytes of the current message still to come (-1: reading a header), and the pieces of it that came. */
    let remaining = -1;
    let pieces: Buffer[] = [];
    let failed = false;
    const failWith = (code: grpc.status, details: string) => {
      failed = true;
      fail(code, details);
    };
    const deliver = (message: Buffer): void => {
      let request: unknown;
      try {
        request = deserialize(message);
      } catch {
        failWith(grpc.status.INTERNAL, 'Error deserializing request');
        return;
      }
      onRequest(request);
    };
    /** A message in pieces is gathered in the scratch buffer and handled at once, so no other stream's can overwrite it first. */
    const deliverPieces = (length: number): void => {
      const gathered = pieces;
      pieces = [];
      if (gathered.length === 1) return deliver(gathered[0]!);
      if (this.scratch.length < length) this.scratch = Buffer.alloc(Math.max(length, 2 * this.scratch.length));
      let at = 0;
      for (const piece of gathered) at += piece.copy(this.scratch, at);
      deliver(this.scratch.subarray(0, length));
    };
    let messageBytes = 0;
    return (chunk: Buffer) => {
      let at = 0;
      while (!failed && at < chunk.length) {
        if (remaining === -1) {
          // A message that lies whole in this chunk is read where it lies: Node gives each chunk to its reader for good.
          if (headerHave === 0 && chunk.length - at >= HEADER_BYTES) {
            const length = chunk.readUInt32BE(at + 1);
            if (chunk[at] === 0 && length <= maxBytes && chunk.length - at - HEADER_BYTES >= length) {
              const start = at + HEADER_BYTES;
              at = start + length;
              deliver(chunk.subarray(start, at));
              continue;
            }
          }
          const take = Math.min(HEADER_BYTES - headerHave, chunk.length - at);
          chunk.copy(header, headerHave, at, at + take);
          headerHave += take;
          at += take;
          if (headerHave < HEADER_BYTES) return;
          headerHave = 0;
          if (header[0] !== 0) return failWith(grpc.status.INTERNAL, 'Received a compressed message on a stream without a grpc-encoding');
          messageBytes = header.readUInt32BE(1);
          if (messageBytes > maxBytes) return failWith(grpc.status.RESOURCE_EXHAUSTED, `Received message larger than max (${messageBytes} vs ${maxBytes})`);
          remaining = messageBytes;
          if (remaining === 0) {
            remaining = -1;
            deliver(Buffer.alloc(0));
          }
          continue;
        }
        const take = Math.min(remaining, chunk.length - at);
        pieces.push(chunk.subarray(at, at + take));
        if (pieces.length === MAX_PIECES) pieces = [Buffer.concat(pieces)];
        remaining -= take;
        at += take;
        if (remaining === 0) {
          remaining = -1;
          deliverPieces(messageBytes);
        }
      }
    };
  }
}
