import { describe, expect, it } from 'vitest';
import { SlicedQueue } from '../../src/daemon/sliced-queue.js';

/** Resolves after `turns` event-loop turns. */
async function turns(count: number): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise((resolve) => setImmediate(resolve));
}

function busyFor(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

describe('SlicedQueue', () => {
  it("runs a burst of slow items over several turns, a budget's worth each, every item once", async () => {
    let turn = 0;
    const ranInTurn = new Map<string, number>();
    const queue = new SlicedQueue<string>((item) => {
      ranInTurn.set(item, turn);
      busyFor(4);
    }, 10);
    for (let i = 0; i < 12; i++) queue.add(`view-${i}`);
    while (queue.size > 0 && turn < 100) {
      await turns(1);
      turn += 1;
    }
    await turns(1);
    expect([...ranInTurn.keys()]).toEqual(Array.from({ length: 12 }, (_, i) => `view-${i}`));
    const perTurn = new Map<number, number>();
    for (const t of ranInTurn.values()) perTurn.set(t, (perTurn.get(t) ?? 0) + 1);
    // 4 ms items and a 10 ms budget: at most three a turn (fewer when the machine is slow), so four turns or more.
    expect(Math.max(...perTurn.values())).toBeLessThanOrEqual(3);
    expect(perTurn.size).toBeGreaterThanOrEqual(4);
  });

  it('runs an item added again before its turn once', async () => {
    const ran: string[] = [];
    const queue = new SlicedQueue<string>((item) => ran.push(item), 10);
    queue.add('a');
    queue.add('b');
    queue.add('a');
    await turns(2);
    expect(ran).toEqual(['a', 'b']);
  });

  it('goes on with the rest in the next turn when an item throws', async () => {
    const ran: string[] = [];
    const errors: unknown[] = [];
    const onError = (error: unknown) => errors.push(error);
    process.on('uncaughtException', onError);
    try {
      const queue = new SlicedQueue<string>((item) => {
        if (item === 'bad') throw new Error('translation failed');
        ran.push(item);
      }, 10);
      queue.add('bad');
      queue.add('good');
      await turns(3);
      expect(ran).toEqual(['good']);
      expect(errors).toHaveLength(1);
      queue.add('later');
      await turns(2);
      expect(ran).toEqual(['good', 'later']);
    } finally {
      process.off('uncaughtException', onError);
    }
  });
});
