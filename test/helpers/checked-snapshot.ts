import { buildSnapshot, checkConsistent } from '../../src/xds/cache/snapshot.js';
import type { Packer, Snapshot } from '../../src/xds/cache/snapshot.js';
import type { ProxyView, Translation } from '../../src/xds/translate/translate.js';
import { envoyApi } from './envoy-api.js';

/** A snapshot a test built whose resources do not reference each other consistently. */
export class InconsistentSnapshotError extends Error {
  constructor(
    readonly view: ProxyView,
    readonly problems: readonly string[],
  ) {
    super(`inconsistent snapshot for ${view}:\n  ${problems.join('\n  ')}`);
    this.name = 'InconsistentSnapshotError';
  }
}

/** Throws unless every reference between the snapshot's resources resolves, in both directions, as the daemon requires before serving. */
export function assertConsistent(snapshot: Snapshot): Snapshot {
  const problems = checkConsistent(snapshot);
  if (problems.length > 0) throw new InconsistentSnapshotError(snapshot.view, problems);
  return snapshot;
}

/**
 * buildSnapshot as tests should call it: each resource packed by the
 * validating API (Envoy's field names, enum values and cheap validation
 * rules), and the snapshot checked for consistency.
 */
export function buildCheckedSnapshot(
  view: ProxyView,
  translation: Translation,
  previous?: Snapshot,
  pack: Packer = (typeUrl, body) => envoyApi.pack(typeUrl, body),
): Snapshot {
  return assertConsistent(buildSnapshot(view, translation, pack, previous));
}
