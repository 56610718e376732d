import type { ClientResourceStatus } from '../generated/envoy/admin/v3/ClientResourceStatus.js';
import type { ClientConfig, _envoy_service_status_v3_ClientConfig_GenericXdsConfig as GenericXdsConfig } from '../generated/envoy/service/status/v3/ClientConfig.js';
import type { ClientStatusDiscoveryServiceHandlers } from '../generated/envoy/service/status/v3/ClientStatusDiscoveryService.js';
import type { ClientStatusRequest__Output } from '../generated/envoy/service/status/v3/ClientStatusRequest.js';
import type { ClientStatusResponse } from '../generated/envoy/service/status/v3/ClientStatusResponse.js';
import type { ConfigStatus } from '../generated/envoy/service/status/v3/ConfigStatus.js';
import type { StringMatcher__Output } from '../generated/envoy/type/matcher/v3/StringMatcher.js';
import type { Timestamp } from '../generated/google/protobuf/Timestamp.js';
import type { StreamInfo } from '../xds/server/stream-state.js';
import { compileSafeRegex, RegexError } from '../util/safe-regex.js';
import { XDS_TYPES } from '../xds/type-urls.js';
import type { AdminSource } from './source.js';
import { syncStatus } from './sync-status.js';
import type { SyncStatus } from './sync-status.js';

const CONFIG_STATUS: Record<SyncStatus, ConfigStatus> = {
  SYNCED: 'SYNCED',
  STALE: 'STALE',
  NACKED: 'ERROR',
  'NOT SENT': 'NOT_SENT',
};

const CLIENT_STATUS: Record<SyncStatus, ClientResourceStatus> = {
  SYNCED: 'ACKED',
  STALE: 'REQUESTED',
  NACKED: 'NACKED',
  'NOT SENT': 'REQUESTED',
};

function timestamp(date: Date): Timestamp {
  const ms = date.getTime();
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

/** A node matcher compiled once per request; a regex from the request is RE2 (see util/safe-regex.ts). */
type NodeMatcher = (value: string) => boolean;

function compileMatcher(matcher: StringMatcher__Output | null, index: number): NodeMatcher {
  if (matcher?.match_pattern === 'safe_regex') {
    const regex = compileSafeRegex(matcher.safe_regex?.regex ?? '', `node_matchers[${index}].node_id.safe_regex`);
    return (value) => regex.matchesWhole(value);
  }
  return (value) => matches(matcher, value);
}

function matches(matcher: StringMatcher__Output | null, value: string): boolean {
  if (matcher === null) return true;
  const fold = (s: string) => (matcher.ignore_case ? s.toLowerCase() : s);
  const v = fold(value);
  switch (matcher.match_pattern) {
    case 'exact':
      return v === fold(matcher.exact ?? '');
    case 'prefix':
      return v.startsWith(fold(matcher.prefix ?? ''));
    case 'suffix':
      return v.endsWith(fold(matcher.suffix ?? ''));
    case 'contains':
      return v.includes(fold(matcher.contains ?? ''));
    default:
      return true;
  }
}

/**
 * What each connected client has, per resource, as CSDS reports it. Status is
 * tracked per type (a SotW response carries a whole type), so every resource
 * of a type shares its type's status; a subscribed name the server has no
 * resource for is DOES_NOT_EXIST.
 */
export function clientStatus(source: Pick<AdminSource, 'connections' | 'snapshot'>, request: ClientStatusRequest__Output): ClientStatusResponse {
  const matchers = (request.node_matchers ?? []).map((m, index) => compileMatcher(m.node_id, index));
  const streams = source
    .connections()
    .filter((s) => s.types().length > 0)
    .filter((s) => matchers.length === 0 || matchers.some((m) => m(s.node.id)));
  return { config: streams.map((s) => clientConfig(source, s, request.exclude_resource_contents)) };
}

function clientConfig(source: Pick<AdminSource, 'snapshot'>, stream: StreamInfo, excludeContents: boolean): ClientConfig {
  const snapshot = source.snapshot(stream.node.view);
  const generic: GenericXdsConfig[] = [];
  const statuses = stream.types();
  for (const typeUrl of XDS_TYPES) {
    const type = statuses.find((t) => t.typeUrl === typeUrl);
    if (type === undefined) continue;
    const available = snapshot?.resources.get(typeUrl) ?? new Map();
    const names = type.wildcard ? [...new Set([...available.keys(), ...type.subscribed])].sort() : type.subscribed;
    const status = syncStatus(type);
    for (const name of names) {
      const resource = available.get(name);
      const config: GenericXdsConfig = {
        type_url: typeUrl,
        name,
        version_info: type.versionSent ?? '',
        config_status: resource === undefined ? 'NOT_SENT' : CONFIG_STATUS[status],
        client_status: resource === undefined ? 'DOES_NOT_EXIST' : CLIENT_STATUS[status],
      };
      if (resource !== undefined && !excludeContents) config.xds_config = resource.packed;
      if (status === 'NACKED' && type.nack !== undefined) {
        config.error_state = {
          details: type.nack.message,
          version_info: type.nack.version ?? '',
          last_update_attempt: timestamp(type.nack.at),
        };
      }
      generic.push(config);
    }
  }
  return {
    node: { id: stream.node.id, cluster: stream.node.cluster, user_agent_name: stream.node.userAgent },
    generic_xds_configs: generic,
  };
}

/** envoy.service.status.v3.ClientStatusDiscoveryService, served beside ADS. */
export function csdsHandlers(source: Pick<AdminSource, 'connections' | 'snapshot'>): ClientStatusDiscoveryServiceHandlers {
  return {
    FetchClientStatus: (call, callback) => {
      try {
        callback(null, clientStatus(source, call.request));
      } catch (error) {
        callback({ code: statusFor(error), details: (error as Error).message });
      }
    },
    StreamClientStatus: (call) => {
      call.on('data', (request: ClientStatusRequest__Output) => {
        try {
          call.write(clientStatus(source, request));
        } catch (error) {
          call.emit('error', { code: statusFor(error), details: (error as Error).message });
        }
      });
      call.on('end', () => call.end());
    },
  };
}

/** A bad matcher in the request is the caller's mistake (INVALID_ARGUMENT), anything else ours (INTERNAL). */
function statusFor(error: unknown): number {
  return error instanceof RegexError ? 3 : 13;
}
