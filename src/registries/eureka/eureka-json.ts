/**
 * Eureka's REST JSON, read the way Netflix's own Jackson codecs read it. Two
 * encodings are in the wild (see test/fixtures/eureka/README.md): the current
 * codec (arrays everywhere, `"$": 8080`, `"@enabled": "true"`,
 * `overriddenStatus`) and the legacy XStream one of Eureka 1.x servers (a lone
 * application or instance as an object, `"$": "8080"`, `"@enabled": true`,
 * `overriddenstatus`, no `application` key when empty). Both parse to the
 * same plain values here. Pure: no I/O, no clock.
 */

/** Eureka's InstanceStatus; anything else a server sends reads as UNKNOWN, as in the Java client. */
export type EurekaStatus = 'UP' | 'DOWN' | 'STARTING' | 'OUT_OF_SERVICE' | 'UNKNOWN';

export const EUREKA_STATUSES: readonly EurekaStatus[] = ['UP', 'DOWN', 'STARTING', 'OUT_OF_SERVICE', 'UNKNOWN'];

export type ActionType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface EurekaPort {
  readonly port: number;
  readonly enabled: boolean;
}

export interface EurekaInstance {
  /** Upper-case application name, the key deltas are applied under. */
  readonly app: string;
  /** `instanceId`, or `hostName` when the server sent none (InstanceInfo.getId()). */
  readonly id: string;
  readonly hostName: string;
  readonly ipAddr: string;
  readonly status: EurekaStatus;
  /** The status text as sent, to report one that did not parse. */
  readonly rawStatus: string;
  readonly overriddenStatus: EurekaStatus | undefined;
  readonly port: EurekaPort | undefined;
  readonly securePort: EurekaPort | undefined;
  readonly vipAddress: string | undefined;
  readonly secureVipAddress: string | undefined;
  /** String-valued metadata; `@class` markers left out. */
  readonly metadata: Readonly<Record<string, string>>;
  /** `dataCenterInfo.metadata` (AWS: `availability-zone`, ...). */
  readonly dataCenterMetadata: Readonly<Record<string, string>>;
  readonly dataCenterName: string | undefined;
  readonly actionType: ActionType | undefined;
  readonly lastDirtyTimestamp: number | undefined;
}

export interface EurekaApplications {
  readonly instances: readonly EurekaInstance[];
  /** `apps__hashcode`: in a delta, the hash of the server's whole registry. */
  readonly hashCode: string | undefined;
  readonly versionDelta: string | undefined;
  /** Instances that could not be read at all (no id and no hostName, ...). */
  readonly problems: readonly string[];
}

/** A body that is not a Eureka response at all. */
export class EurekaShapeError extends Error {}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A lone element as an object, a list as an array, nothing as undefined: always an array. */
function asList(value: unknown): unknown[] {
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value : [value];
}

/** Strings, numbers and booleans as text; anything else undefined. */
function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return undefined;
}

function integer(value: unknown): number | undefined {
  const t = text(value)?.trim();
  if (t === undefined || !/^-?\d+$/.test(t)) return undefined;
  return Number(t);
}

function bool(value: unknown, fallback: boolean): boolean {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string') return value.trim().toLowerCase() === 'true';
  return fallback;
}

export function parseStatus(value: unknown): EurekaStatus {
  const t = text(value)?.trim().toUpperCase();
  return (EUREKA_STATUSES as readonly string[]).includes(t ?? '') ? (t as EurekaStatus) : 'UNKNOWN';
}

/**
 * `{"$": 8080, "@enabled": "true"}`, `{"@enabled": true, "$": "8080"}`, or a
 * bare number. A missing `@enabled` means enabled for the plain port and
 * disabled for the secure one, the InstanceInfo defaults.
 */
export function parsePort(value: unknown, enabledByDefault: boolean): EurekaPort | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) {
    const port = integer(value);
    return port === undefined ? undefined : { port, enabled: enabledByDefault };
  }
  const port = integer(value['$']);
  if (port === undefined) return undefined;
  return { port, enabled: bool(value['@enabled'], enabledByDefault) };
}

/** String entries of a metadata map; `@class` (`java.util.Collections$EmptyMap`) is a codec marker, not data. */
export function parseMetadata(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isObject(value)) return out;
  for (const [key, raw] of Object.entries(value)) {
    if (key === '@class') continue;
    const t = text(raw);
    if (t !== undefined) out[key] = t;
  }
  return out;
}

function parseAction(value: unknown): ActionType | undefined {
  const t = text(value)?.toUpperCase();
  return t === 'ADDED' || t === 'MODIFIED' || t === 'DELETED' ? t : undefined;
}

/** One instance, or a problem message when it has no identity to key it by. */
export function parseInstance(value: unknown, appName: string | undefined): EurekaInstance | string {
  if (!isObject(value)) return `instance of ${appName ?? 'an application'} is not an object`;
  const hostName = text(value['hostName'])?.trim() ?? '';
  const instanceId = text(value['instanceId'])?.trim();
  const id = instanceId !== undefined && instanceId !== '' ? instanceId : hostName;
  const app = (appName ?? text(value['app']) ?? '').trim().toUpperCase();
  if (app === '') return `instance ${id || '(no id)'} has no application name`;
  if (id === '') return `an instance of ${app} has neither instanceId nor hostName`;
  const rawStatus = text(value['status']) ?? '';
  const override = value['overriddenStatus'] ?? value['overriddenstatus'];
  const dataCenter = isObject(value['dataCenterInfo']) ? value['dataCenterInfo'] : {};
  const lastDirty = integer(value['lastDirtyTimestamp']);
  return {
    app,
    id,
    hostName,
    ipAddr: text(value['ipAddr'])?.trim() ?? '',
    status: parseStatus(rawStatus),
    rawStatus,
    overriddenStatus: override === undefined ? undefined : parseStatus(override),
    port: parsePort(value['port'], true),
    securePort: parsePort(value['securePort'], false),
    vipAddress: text(value['vipAddress']),
    secureVipAddress: text(value['secureVipAddress']),
    metadata: parseMetadata(value['metadata']),
    dataCenterMetadata: parseMetadata(dataCenter['metadata']),
    dataCenterName: text(dataCenter['name']),
    actionType: parseAction(value['actionType']),
    lastDirtyTimestamp: lastDirty,
  };
}

function parseApplication(value: unknown, instances: EurekaInstance[], problems: string[]): void {
  if (!isObject(value)) {
    problems.push('an application is not an object');
    return;
  }
  const name = text(value['name'])?.trim();
  for (const raw of asList(value['instance'])) {
    const parsed = parseInstance(raw, name === '' ? undefined : name);
    if (typeof parsed === 'string') problems.push(parsed);
    else instances.push(parsed);
  }
}

/**
 * A `/apps`, `/apps/delta`, `/apps/{APP}` or `/apps/{APP}/{ID}` body. Throws
 * EurekaShapeError when the body is none of those.
 */
export function parseApplications(body: unknown): EurekaApplications {
  const instances: EurekaInstance[] = [];
  const problems: string[] = [];
  if (isObject(body) && isObject(body['applications'])) {
    const apps = body['applications'];
    for (const app of asList(apps['application'])) parseApplication(app, instances, problems);
    return { instances, problems, hashCode: text(apps['apps__hashcode']), versionDelta: text(apps['versions__delta']) };
  }
  if (isObject(body) && isObject(body['application'])) {
    parseApplication(body['application'], instances, problems);
    return { instances, problems, hashCode: undefined, versionDelta: undefined };
  }
  if (isObject(body) && isObject(body['instance'])) {
    const parsed = parseInstance(body['instance'], undefined);
    if (typeof parsed === 'string') problems.push(parsed);
    else instances.push(parsed);
    return { instances, problems, hashCode: undefined, versionDelta: undefined };
  }
  throw new EurekaShapeError('not a Eureka response: expected an "applications", "application" or "instance" object');
}
