import { Subject } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { describe, expect, it } from 'vitest';
import { debounceWithMaxWait } from '../../src/daemon/batching.js';

describe('debounceWithMaxWait', () => {
  const scheduler = () => new TestScheduler((actual, expected) => expect(actual).toEqual(expected));

  it('emits the latest value after a quiet period', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const source = cold('a-b-c 20ms |');
      // quiet 10 ms after c (frame 4) -> frame 14; completion at 25 flushes nothing more.
      expectObservable(source.pipe(debounceWithMaxWait(10, 100))).toBe('14ms c 10ms |');
    });
  });

  it('emits at the maximum wait while churn never goes quiet', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const source = cold('a 4ms b 4ms c 4ms d 4ms e 4ms f 4ms g 4ms h 40ms |');
      // Values arrive every 5 ms, so a 10 ms quiet never comes before h; the 20 ms maximum forces e out at 20.
      expectObservable(source.pipe(debounceWithMaxWait(10, 20))).toBe('20ms e 24ms h 30ms |');
    });
  });

  it('flushes the pending value when the source completes', () => {
    const source = new Subject<number>();
    const seen: number[] = [];
    source.pipe(debounceWithMaxWait(1_000, 5_000)).subscribe((v) => seen.push(v));
    source.next(1);
    source.next(2);
    source.complete();
    expect(seen).toEqual([2]);
  });
});
