import type { Observable } from 'rxjs';
import type { RegistryKind, RegistryState } from '../model/registry-state.js';

/**
 * One source of services. It emits its whole state whenever that changes;
 * when the source cannot be read it re-emits the last good services marked stale.
 */
export interface Registry {
  readonly name: string;
  readonly kind: RegistryKind;
  readonly states: Observable<RegistryState>;
  /** Starts watching; resolves once the first read has been attempted. */
  start(): Promise<void>;
  /** Stops watching and completes `states`. */
  stop(): Promise<void>;
}
