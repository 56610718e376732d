import { Observable, asyncScheduler } from 'rxjs';
import type { MonoTypeOperatorFunction, SchedulerLike, Subscription } from 'rxjs';

/**
 * Emits the latest value once the source has been quiet for `quietMs`, but
 * never later than `maxWaitMs` after the first value it is holding, so
 * continuous churn still reaches clients. rxjs's debounceTime has no maximum.
 */
export function debounceWithMaxWait<T>(
  quietMs: number,
  maxWaitMs: number,
  scheduler: SchedulerLike = asyncScheduler,
): MonoTypeOperatorFunction<T> {
  return (source) =>
    new Observable<T>((subscriber) => {
      let pending: { value: T } | undefined;
      let quietTimer: Subscription | undefined;
      let maxTimer: Subscription | undefined;
      const flush = () => {
        quietTimer?.unsubscribe();
        maxTimer?.unsubscribe();
        quietTimer = maxTimer = undefined;
        if (pending !== undefined) {
          const { value } = pending;
          pending = undefined;
          subscriber.next(value);
        }
      };
      const subscription = source.subscribe({
        next(value) {
          pending = { value };
          quietTimer?.unsubscribe();
          quietTimer = scheduler.schedule(flush, quietMs);
          maxTimer ??= scheduler.schedule(flush, maxWaitMs);
        },
        error(error) {
          subscriber.error(error);
        },
        complete() {
          flush();
          subscriber.complete();
        },
      });
      return () => {
        subscription.unsubscribe();
        quietTimer?.unsubscribe();
        maxTimer?.unsubscribe();
      };
    });
}
