import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Service } from '../../src/model/service.js';
import { SnapshotCache } from '../../src/xds/cache/snapshot-cache.js';
import { envoyApi } from '../helpers/envoy-api.js';
import { XdsServer } from '../../src/xds/server/ads-server.js';
import { PUMP_BUDGET_MS, PushQueue, SMALL_PUSH_BYTES } from '../../src/xds/server/push-queue.js';
import type { Pushable } from '../../src/xds/server/push-queue.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { RawDeltaClient, StuckDeltaClient } from '../helpers/delta-client.js';
import { eventually } from '../helpers/eventually.js';
import { catalogOf, service, silentLogger, publish as publishTo } from '../helpers/fixtures.js';

const api = envoyApi;

describe('PushQueue', () => {
  const pushable = (log: string[], name: string, finish: 'now' | 'later' | 'never', pending: (() => void)[] = []): Pushable => ({
    flush(done) {
      log.push(name);
      if (finish === 'now') done();
      else if (finish === 'later') pending.push(done);
    },
  });

  it('runs at most `concurrency` pushes at once, in order, and queues a stream once however often it is enqueued', () => {
    const queue = new PushQueue({ concurrency: 4, slotTimeoutMs: 60_000 });
    const log: string[] = [];
    const pending: (() => void)[] = [];
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((n) => pushable(log, n, 'later', pending));
    queue.enqueue(a!);
    queue.enqueue(b!);
    queue.enqueue(c!);
    queue.enqueue(d!);
    queue.enqueue(d!);
    // New streams get three of the four slots; the fourth is kept for streams known to drain.
    expect(log).toEqual(['a', 'b', 'c']);
    expect(queue.queued).toBe(1);
    pending.shift()!();
    expect(log).toEqual(['a', 'b', 'c', 'd']);
    expect(queue.inFlight).toBe(3);
  });

  it('serves a stream whose pushes drained first, in the slot kept free, while new streams that do not read hold the others', () => {
    const queue = new PushQueue({ concurrency: 4, slotTimeoutMs: 60_000 });
    const log: string[] = [];
    const good = pushable(log, 'good', 'now');
    queue.enqueue(good); // drains at once: proven
    const stuck = ['s1', 's2', 's3', 's4', 's5'].map((n) => pushable(log, n, 'never'));
    for (const s of stuck) queue.enqueue(s);
    expect(log).toEqual(['good', 's1', 's2', 's3']);
    queue.enqueue(good);
    expect(log).toEqual(['good', 's1', 's2', 's3', 'good']);
    expect(queue.queued).toBe(2);
  });

  it('gives a proven stream that stops draining only a few times its usual drain time, not the whole slot timeout', async () => {
    const queue = new PushQueue({ concurrency: 1, slotTimeoutMs: 60_000 });
    const log: string[] = [];
    let stall = false;
    const flaky: Pushable = {
      flush(done) {
        log.push('flaky');
        if (!stall) done();
      },
    };
    queue.enqueue(flaky);
    stall = true;
    queue.enqueue(flaky);
    queue.enqueue(pushable(log, 'next', 'now'));
    expect(log).toEqual(['flaky', 'flaky']);
    // Its history says it drains in ~0 ms: the slot is freed after the 50 ms floor, far before 60 s.
    await eventually(() => expect(log).toEqual(['flaky', 'flaky', 'next']), 2_000);
    // Having timed out, it is new again and waits the full timeout next time.
    queue.enqueue(flaky);
    queue.enqueue(pushable(log, 'after', 'now'));
    await new Promise((r) => setTimeout(r, 300));
    expect(log).toEqual(['flaky', 'flaky', 'next', 'flaky']);
  });

  it('gives a new stream as long as its push would take at 1 MiB/s, then frees its slot', async () => {
    const queue = new PushQueue({ concurrency: 1, slotTimeoutMs: 60_000 });
    const log: string[] = [];
    // 300 KB: about 290 ms at 1 MiB/s.
    queue.enqueue({
      flush: () => {
        log.push('new-and-stuck');
        return 300_000;
      },
    });
    queue.enqueue(pushable(log, 'next', 'now'));
    await new Promise((r) => setTimeout(r, 100));
    expect(log).toEqual(['new-and-stuck']);
    await eventually(() => expect(log).toEqual(['new-and-stuck', 'next']), 2_000);
  });

  it('keeps a stream that drained after its slot timed out in the first lane', async () => {
    const queue = new PushQueue({ concurrency: 2, slotTimeoutMs: 60_000 });
    const log: string[] = [];
    let finish: (() => void) | undefined;
    const slow: Pushable = {
      flush(done) {
        log.push('slow');
        finish = done;
        return 10_000; // ~10 ms at 1 MiB/s: its slot times out after the 50 ms floor
      },
    };
    queue.enqueue(slow);
    await new Promise((r) => setTimeout(r, 150));
    finish!(); // late, but it did drain
    // One slot for new streams (taken by a stuck one), one kept for proven ones: slow gets it.
    queue.enqueue(pushable(log, 'stuck', 'never'));
    queue.enqueue(slow);
    expect(log).toEqual(['slow', 'stuck', 'slow']);
  });

  /** A stream that drained its first push at once, and whose later pushes write `bytes` and wait in `pending`. */
  const provenThenWaiting = (queue: PushQueue, log: string[], name: string, bytes: number, pending: (() => void)[]): Pushable => {
    let first = true;
    const stream: Pushable = {
      flush(done) {
        log.push(name);
        if (first) {
          first = false;
          done();
          return bytes;
        }
        pending.push(done);
        return bytes;
      },
    };
    queue.enqueue(stream);
    return stream;
  };

  it('lets a small push to a proven stream give its slot back as soon as it is written, so one change reaches every client in one go', () => {
    const queue = new PushQueue({ concurrency: 1, slotTimeoutMs: 60_000 });
    const log: string[] = [];
    const pending: (() => void)[] = [];
    const streams = ['a', 'b', 'c'].map((n) => provenThenWaiting(queue, log, n, SMALL_PUSH_BYTES, pending));
    log.length = 0;
    for (const s of streams) queue.enqueue(s);
    // None of the three has drained, yet one slot served all of them.
    expect(log).toEqual(['a', 'b', 'c']);
    expect(queue.inFlight).toBe(0);
    expect(queue.queued).toBe(0);
    // Draining later keeps them proven: the next small pushes go straight through again.
    for (const done of pending.splice(0)) done();
    for (const s of streams) queue.enqueue(s);
    expect(log).toEqual(['a', 'b', 'c', 'a', 'b', 'c']);
  });

  it('holds the slot for a large push to a proven stream, and for a push of any size to a new stream', () => {
    const queue = new PushQueue({ concurrency: 1, slotTimeoutMs: 60_000 });
    const log: string[] = [];
    const pending: (() => void)[] = [];
    const large = provenThenWaiting(queue, log, 'large', SMALL_PUSH_BYTES + 1, pending);
    log.length = 0;
    queue.enqueue(large);
    queue.enqueue({
      flush(done) {
        log.push('new');
        pending.push(done);
        return 100;
      },
    });
    expect(log).toEqual(['large']);
    pending.shift()!();
    expect(log).toEqual(['large', 'new']);
    queue.enqueue(pushable(log, 'after-new', 'now'));
    expect(log).toEqual(['large', 'new']);
    pending.shift()!();
    expect(log).toEqual(['large', 'new', 'after-new']);
  });

  it('runs small pushes back to back for at most PUMP_BUDGET_MS, then lets the event loop turn before the rest', async () => {
    const queue = new PushQueue({ concurrency: 4, slotTimeoutMs: 60_000 });
    const log: string[] = [];
    const streams = Array.from({ length: 100 }, (_, i) => {
      let first = true;
      const stream: Pushable = {
        flush(done) {
          if (first) {
            first = false;
            done();
            return 0;
          }
          log.push(String(i));
          // Each push takes a millisecond of CPU: a hundred of them are twice the budget.
          const until = performance.now() + PUMP_BUDGET_MS / 50;
          while (performance.now() < until);
          return 100;
        },
      };
      queue.enqueue(stream);
      return stream;
    });
    for (const s of streams) queue.enqueue(s);
    const beforeATurn = log.length;
    expect(beforeATurn).toBeGreaterThan(0);
    expect(beforeATurn).toBeLessThan(100);
    await new Promise((r) => setImmediate(r));
    await eventually(() => expect(log).toHaveLength(100), 2_000);
    expect(log).toEqual(streams.map((_, i) => String(i)));
  });

  it('frees the slot of a push that never finishes after the slot timeout', async () => {
    const queue = new PushQueue({ concurrency: 1, slotTimeoutMs: 50 });
    const log: string[] = [];
    queue.enqueue(pushable(log, 'stuck', 'never'));
    queue.enqueue(pushable(log, 'healthy', 'now'));
    expect(log).toEqual(['stuck']);
    await eventually(() => expect(log).toEqual(['stuck', 'healthy']), 1_000);
  });
});

/** Services with many endpoints, so that responses are large enough to fill a stuck client's flow-control window. */
function fleet(round: number): Service[] {
  return Array.from({ length: 40 }, (_, s) => {
    let builder = service(`svc-${s}.mesh.local`).port(8000 + s);
    for (let e = 0; e < 60; e++) builder = builder.endpoint(`10.${s}.${e}.${round % 250}`);
    return builder.build();
  });
}

describe('flow control: a client that stops reading', () => {
  const cache = new SnapshotCache();
  const server = new XdsServer(api, cache, silentLogger, {}, { pushConcurrency: 4, pushSlotTimeoutMs: 200 });
  let address: string;

  const publish = (round: number) => publishTo(cache, catalogOf(...fleet(round)));

  beforeAll(async () => {
    publish(0);
    address = `127.0.0.1:${await server.listen({ listen: '127.0.0.1:0' })}`;
  });
  afterAll(() => server.shutdown(500));

  it('holds back neither the healthy clients nor more than one batch of its own responses', async () => {
    const names = fleet(0).map((s) => `outbound|${s.ports[0]!.number}||${s.hostname}`);
    const stuck = new StuckDeltaClient(address, { id: 'stuck', user_agent_name: 'envoy' }, { type_url: TypeUrl.ClusterLoadAssignment, resource_names_subscribe: names });
    const healthy = Array.from({ length: 6 }, (_, i) => new RawDeltaClient(address, { id: `healthy-${i}`, user_agent_name: 'envoy' }));
    for (const client of healthy) {
      client.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names_subscribe: names });
      client.ack(await client.next());
    }
    const stuckStream = () => server.connections().find((s) => s.node.id === 'stuck')!;

    const rounds = 20;
    for (let round = 1; round <= rounds; round++) {
      publish(round);
      // Every healthy client gets every round promptly, whatever the stuck one does.
      for (const client of healthy) {
        const response = await client.next(2_000);
        expect(response.resources.length).toBe(names.length);
        expect(JSON.stringify(RawDeltaClient.body(response, names[0]!)).includes(`"address":"10.0.0.${round}"`)).toBe(true);
        client.ack(response);
      }
    }

    const flow = stuckStream().flow!();
    // Blocked: its writes never finish, later changes fold into one pending push.
    expect(flow.writesInFlight).toBeGreaterThan(0);
    expect(flow.writesInFlight).toBeLessThanOrEqual(1);
    expect(flow.pushPending).toBe(true);
    expect(flow.coalesced).toBeGreaterThan(0);
    expect(flow.bytesInFlight).toBeLessThan(1024 * 1024);
    // Its bytes sent stopped growing once it stopped reading: far less than the healthy clients got.
    const healthyBytes = server.connections().find((s) => s.node.id === 'healthy-0')!.flow!().bytesSent;
    expect(flow.bytesSent).toBeLessThan(healthyBytes / 2);
    expect(server.pushQueue().queued).toBe(0);

    for (const client of [stuck, ...healthy]) client.close();
  }, 60_000);
});
