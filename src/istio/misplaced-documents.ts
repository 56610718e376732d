import { map } from 'rxjs';
import type { Observable } from 'rxjs';
import type { Diagnostic } from '../errors.js';
import { FileSubscription, pathMatcher } from './file-store.js';
import type { IstioFileStores } from './file-store.js';
import { POLICY_KINDS, SERVICE_KINDS, kindsNotRead } from './kinds.js';

export interface ReaderPatterns {
  /** Absolute patterns of every file registry. */
  readonly registries: readonly string[];
  /** Absolute patterns of `policy.paths`. */
  readonly policy: readonly string[];
}

/**
 * Documents that no reader applies: a VirtualService or DestinationRule in a
 * file only a registry lists, a ServiceEntry or WorkloadEntry in a file only
 * `policy.paths` lists. It joins the stores the readers hold, so nothing is
 * read twice; kept apart from the readers, so a reader's config (and its
 * restart on reload) does not depend on the other's paths.
 */
export class MisplacedDocuments {
  readonly diagnostics: Observable<Diagnostic[]>;
  private readonly files: FileSubscription;

  constructor(stores: IstioFileStores, patterns: ReaderPatterns) {
    this.files = new FileSubscription(stores, [...patterns.registries, ...patterns.policy]);
    const readAsPolicy = pathMatcher(patterns.policy);
    const readAsServices = pathMatcher(patterns.registries);
    this.diagnostics = this.files.contents.pipe(
      map(({ accepted }) => [
        ...kindsNotRead(accepted, readAsPolicy, POLICY_KINDS, 'policy.paths does not list it'),
        ...kindsNotRead(accepted, readAsServices, SERVICE_KINDS, 'no file registry lists it'),
      ]),
    );
  }

  start(): Promise<void> {
    return this.files.start();
  }

  stop(): Promise<void> {
    return this.files.stop();
  }
}
