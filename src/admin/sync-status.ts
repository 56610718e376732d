import type { TypeStatus } from '../xds/server/stream-state.js';

/**
 * A client's standing on one type, in istioctl proxy-status terms:
 * SYNCED   it ACKed the latest version sent;
 * NACKED   it rejected the latest version sent;
 * STALE    the latest version was sent and not answered yet;
 * NOT SENT nothing of this type was sent (not requested, or nothing to send).
 */
export type SyncStatus = 'SYNCED' | 'NACKED' | 'STALE' | 'NOT SENT';

export function syncStatus(type: TypeStatus | undefined): SyncStatus {
  if (type === undefined || type.versionSent === undefined) return 'NOT SENT';
  if (type.nack !== undefined && type.nack.version === type.versionSent) return 'NACKED';
  if (type.versionAcked === type.versionSent) return 'SYNCED';
  return 'STALE';
}
