import type { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { callLayer } from './grpc-call-layers.js';

/** gRPC's length-prefixed message header: a compressed flag and a 32-bit big-endian length. */
const HEADER_BYTES = 5;
/** grpc-js's own default, which meshbridge does not change. */
const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
/**
 * What a message split across chunks is gathered in first: a 40 KB SotW ACK
 * fits. A larger message grows its buffer as its bytes arrive, so a client
 * that announces 4 MiB and sends a few bytes makes the server hold 64 KiB,
 * not what was announced.
 */
const GATHER_BUFFER_BYTES = 64 * 1024;
/**
 * Gather buffers kept for the next split message once one is handled (4 MiB
 * at most): after a change, 2,000 ACKs of 40 KB each are gathered within a
 * few hundred milliseconds, a few dozen at a time, and a fresh buffer for
 * each was 80 MB of ArrayBuffers for the collector to find.
 */
const MAX_SPARE_GATHER_BUFFERS = 64;

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
 * itself: a message that lies in one chunk is read where it lies, and each is
 * decoded and handled before the next is read. Deserializers used here must
 * therefore keep nothing of the bytes they are given (request-names.ts
 * copies what it keeps). grpc-js still owns the call: its status, trailers,
 * half-close, cancellation and writes.
 *
 * A message split across chunks (a 40 KB ACK comes as three 16 KiB DATA
 * frames, often in separate socket reads) is copied out of each chunk as it
 * arrives, into a gather buffer held by its stream until the message has been
 * handled, then kept for the next split message of any stream. No chunk is
 * kept past its 'data' event: each is a view of a socket read's ArrayBuffer,
 * and keeping the views until a message was whole kept those ArrayBuffers
 * alive through young-generation collections. With 2,000 SotW clients ACKing
 * each change, that was about one mark-compact per change, started for
 * "external memory pressure", and some 40 % of the server's CPU (100
 * changes: 120 mark-compacts and 41-45 s of server CPU before, 26
 * mark-compacts and 23.5 s after).
 *
 * Taking over reads grpc-js's private fields (1.14); when they are not what
 * this expects, or the moment is not one where grpc-js holds no part of a
 * message, nothing is changed and grpc-js keeps reading, as before.
 */
export class InPlaceRequests {
  private taken = 0;
  private gathering = 0;
  private readonly spare: Buffer[] = [];

  /** Streams whose requests are read in place: for tests. */
  get streamsTaken(): number {
    return this.taken;
  }

  /** Bytes held for messages whose first chunks have come and the rest not yet, across all streams. */
  get bytesGathering(): number {
    return this.gathering;
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
    const reader = this.reader(maxBytes, deserialize, onRequest, (code, details) => {
      stop();
      (call as EventEmitter).emit('error', { code, details });
    });
    const stop = () => {
      stream.removeListener('data', reader.read);
      stream.removeListener('close', stop);
      reader.stop();
    };
    stream.removeListener('data', stream.listeners('data')[0] as (chunk: Buffer) => void);
    stream.on('data', reader.read);
    // A stream that closes mid-message gives back what it was gathering.
    stream.once('close', stop);
    stream.resume();
    this.taken += 1;
    return stop;
  }

  /**
   * A 'data' listener that reads gRPC messages from the chunks of one HTTP/2
   * stream, and what stops it: nothing more is read, not even the rest of the
   * chunk whose request stopped it, and a message half-gathered gives its
   * buffer back.
   */
  private reader(
    maxBytes: number,
    deserialize: (bytes: Buffer) => unknown,
    onRequest: (request: unknown) => void,
    fail: (code: grpc.status, details: string) => void,
  ): { read: (chunk: Buffer) => void; stop: () => void } {
    const header = Buffer.alloc(HEADER_BYTES);
    let headerHave = 0;
    /** The current message's length, and how much of it is still to come (-1: reading a header). */
    let messageBytes = 0;
    let remaining = -1;
    /** The current message's bytes so far, when it did not lie whole in one chunk. */
    let gathered: Buffer | undefined;
    let stopped = false;
    const release = () => {
      if (gathered === undefined) return;
      this.gathering -= gathered.length;
      this.giveBack(gathered);
      gathered = undefined;
    };
    const stop = () => {
      stopped = true;
      release();
    };
    const failWith = (code: grpc.status, details: string) => {
      stop();
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
    /** Copies `take` bytes at `from` in `chunk` into the message being gathered, growing its buffer to at most the message's length. */
    const gather = (chunk: Buffer, from: number, take: number): void => {
      const have = messageBytes - remaining;
      if (gathered === undefined) {
        gathered = this.spare.pop() ?? Buffer.allocUnsafeSlow(GATHER_BUFFER_BYTES);
        this.gathering += gathered.length;
      }
      if (gathered.length < have + take) {
        const grown = Buffer.allocUnsafeSlow(Math.min(messageBytes, Math.max(have + take, 2 * gathered.length)));
        gathered.copy(grown, 0, 0, have);
        this.gathering += grown.length - gathered.length;
        this.giveBack(gathered);
        gathered = grown;
      }
      chunk.copy(gathered, have, from, from + take);
    };
    const read = (chunk: Buffer) => {
      let at = 0;
      while (!stopped && at < chunk.length) {
        if (remaining === -1) {
          // A message that lies whole in this chunk is read where it lies, before the chunk's event is over.
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
        gather(chunk, at, take);
        remaining -= take;
        at += take;
        if (remaining === 0) {
          remaining = -1;
          // Handled before its buffer is given back: deserializers keep nothing of the bytes they are given.
          deliver(gathered!.subarray(0, messageBytes));
          release();
        }
      }
    };
    return { read, stop };
  }

  private giveBack(buffer: Buffer): void {
    if (buffer.length === GATHER_BUFFER_BYTES && this.spare.length < MAX_SPARE_GATHER_BUFFERS) this.spare.push(buffer);
  }
}
