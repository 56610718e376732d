import type { Diagnostic } from '../errors.js';
import type { Service } from './service.js';

export type RegistryKind = 'file' | 'consul' | 'eureka';

/**
 * The full state of one source at one moment. A registry always emits whole
 * states, never deltas, so merging stays a pure function of the latest states.
 */
export interface RegistryState {
  readonly registry: string;
  readonly kind: RegistryKind;
  readonly services: readonly Service[];
  /** True once the source has been read successfully at least once. */
  readonly synced: boolean;
  /** True while the source cannot be read and `services` is the last good state. */
  readonly stale: boolean;
  /** Findings about the source's own input, such as rejected documents or instances. */
  readonly diagnostics: readonly Diagnostic[];
  /**
   * Optional, for operators (/debug/registryz, metrics): when the source was
   * last read successfully. A registry that leaves it out gets the time the
   * daemon received its latest synced, non-stale state.
   */
  readonly lastSyncAt?: Date;
  /**
   * Set while `services` are the state an earlier run saved (see
   * registries/saved-state.ts), because the source has not answered yet in this one.
   */
  readonly restoredAt?: Date;
  /** Optional: the latest failure to read the source, kept after recovery so operators can see it. */
  readonly lastError?: RegistryError;
}

export interface RegistryError {
  readonly message: string;
  readonly at: Date;
}
