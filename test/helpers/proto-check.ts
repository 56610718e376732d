import protobuf from 'protobufjs';
import protoFiles from '../../src/xds/proto-files.json' with { type: 'json' };
import { loadEnvoyRoot } from '../../src/xds/protos.js';

/** Parsed from the .proto files rather than the served descriptor, so a resource is checked against Envoy's own definitions. */
const root: protobuf.Root = loadEnvoyRoot(protoFiles.files);

/**
 * Every problem protobufjs would hide: it drops unknown fields and bad enum
 * names without a word when encoding, so a misspelled field would reach
 * Envoy as nothing at all. Walks a resource (a plain object, nested Anys
 * written with `@type`) against its message type, and applies the cheap
 * protoc-gen-validate rules Envoy enforces when it accepts a resource:
 * required messages and oneofs, string lengths, list sizes, number and
 * duration bounds.
 */
export function protoProblems(typeUrl: string, value: unknown): string[] {
  const problems: string[] = [];
  check(typeFor(typeUrl), value, shortName(typeUrl), problems);
  return problems;
}

/**
 * The problems of a resource as it travels, encoded in an Any: bytes that a
 * decode/encode round trip does not preserve (fields unknown to Envoy's API,
 * at any depth of nested Anys), then everything protoProblems finds in it.
 */
export function encodedProblems(any: { type_url: string; value: Uint8Array }): string[] {
  const problems: string[] = [];
  const type = typeFor(any.type_url);
  const message = roundTrip(type, any.value, shortName(any.type_url), problems);
  if (message === undefined) return problems;
  const plain = type.toObject(message, { longs: String, enums: String, bytes: String, defaults: false, json: true });
  check(type, plain, shortName(any.type_url), problems);
  return problems;
}

function typeFor(typeUrl: string): protobuf.Type {
  return root.lookupType(typeUrl.slice(typeUrl.indexOf('/') + 1));
}

function shortName(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf('.') + 1);
}

/** Decodes `bytes`, reports what re-encoding loses, and does the same for every Any inside. */
function roundTrip(type: protobuf.Type, bytes: Uint8Array, path: string, problems: string[]): protobuf.Message | undefined {
  let message: protobuf.Message;
  try {
    message = type.decode(bytes);
  } catch (error) {
    problems.push(`${path}: cannot be decoded as ${type.fullName}: ${(error as Error).message}`);
    return undefined;
  }
  const again = type.encode(message).finish();
  if (!Buffer.from(again).equals(Buffer.from(bytes))) {
    problems.push(`${path}: ${bytes.length} bytes, ${again.length} after a decode/encode round trip: fields unknown to ${type.fullName}`);
  }
  nestedAnys(type, message, path, problems);
  return message;
}

function nestedAnys(type: protobuf.Type, message: protobuf.Message, path: string, problems: string[]): void {
  for (const field of type.fieldsArray) {
    const value = (message as unknown as Record<string, unknown>)[field.name];
    if (value === undefined || value === null) continue;
    field.resolve();
    if (!(field.resolvedType instanceof protobuf.Type)) continue;
    const items = field.map ? Object.values(value as object) : field.repeated ? (value as unknown[]) : [value];
    for (const item of items as protobuf.Message[]) {
      if (field.resolvedType.fullName === '.google.protobuf.Any') {
        const { type_url: url, value: bytes } = item as unknown as { type_url: string; value: Uint8Array };
        let inner: protobuf.Type;
        try {
          inner = typeFor(url);
        } catch {
          problems.push(`${path}.${field.name}: Any of unknown type ${url}`);
          continue;
        }
        roundTrip(inner, bytes, `${path}.${field.name}<${shortName(url)}>`, problems);
      } else {
        nestedAnys(field.resolvedType, item, `${path}.${field.name}`, problems);
      }
    }
  }
}

function check(type: protobuf.Type, value: unknown, path: string, problems: string[]): void {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    problems.push(`${path}: expected a ${type.name} message, got ${JSON.stringify(value)}`);
    return;
  }
  if (type.fullName === '.google.protobuf.Any') {
    const url = (value as Record<string, unknown>)['@type'];
    if (typeof url !== 'string') {
      problems.push(`${path}: Any without @type`);
      return;
    }
    const { '@type': _, ...body } = value as Record<string, unknown>;
    check(typeFor(url), body, `${path}<${shortName(url)}>`, problems);
    return;
  }
  const present = (key: string): boolean => {
    const item = (value as Record<string, unknown>)[key];
    return item !== undefined && item !== null;
  };
  for (const [key, item] of Object.entries(value)) {
    // protobufjs leaves out what is undefined or null, as a field never set.
    if (item === undefined || item === null) continue;
    const field = type.fields[key];
    if (field === undefined) {
      problems.push(`${path}.${key}: no such field in ${type.fullName}`);
      continue;
    }
    field.resolve();
    const items = field.map ? Object.values(item as object) : field.repeated ? (item as unknown[]) : [item];
    if ((field.repeated || field.map) && typeof item !== 'object') problems.push(`${path}.${key}: expected a list or map`);
    for (const element of items) {
      if (field.resolvedType instanceof protobuf.Type) check(field.resolvedType, element, `${path}.${key}`, problems);
      else if (field.resolvedType instanceof protobuf.Enum && !(String(element) in field.resolvedType.values)) {
        problems.push(`${path}.${key}: ${String(element)} is not a value of ${field.resolvedType.fullName}`);
      }
    }
  }
  for (const field of type.fieldsArray) {
    const rules = validateRules(field);
    if (rules !== undefined) checkRules(field, rules, (value as Record<string, unknown>)[field.name], `${path}.${field.name}`, problems);
  }
  for (const oneof of type.oneofsArray) {
    const required = oneof.options?.['(validate.required)'] === true;
    if (required && !oneof.oneof.some(present)) problems.push(`${path}: one of ${oneof.oneof.join(', ')} is required`);
  }
}

type Rules = Record<string, Record<string, unknown> | undefined>;

function validateRules(field: protobuf.Field): Rules | undefined {
  const parsed = (field.parsedOptions ?? []) as Record<string, unknown>[];
  const found = parsed.find((o) => '(validate.rules)' in o) as Record<string, Rules> | undefined;
  return found?.['(validate.rules)'];
}

/** The protoc-gen-validate rules that are cheap to apply to a plain object; others are left to Envoy. */
function checkRules(field: protobuf.Field, rules: Rules, value: unknown, path: string, problems: string[]): void {
  const absent = value === undefined || value === null;
  // A oneof member not set is not validated; the oneof's own required flag covers it.
  if (absent && field.partOf !== null) return;
  if (rules['message']?.['required'] === true && absent) problems.push(`${path}: required`);
  const list = rules['repeated'];
  if (list !== undefined && (field.repeated || absent)) {
    const count = absent ? 0 : (value as unknown[]).length;
    if (typeof list['min_items'] === 'number' && count < list['min_items']) problems.push(`${path}: at least ${list['min_items']} items, got ${count}`);
    if (typeof list['max_items'] === 'number' && count > list['max_items']) problems.push(`${path}: at most ${list['max_items']} items, got ${count}`);
  }
  if (field.repeated || field.map) return;
  const text = rules['string'];
  if (text !== undefined && (absent || typeof value === 'string')) {
    const length = absent ? 0 : [...(value as string)].length;
    if (typeof text['min_len'] === 'number' && length < text['min_len']) problems.push(`${path}: at least ${text['min_len']} characters, got ${length}`);
    if (typeof text['max_len'] === 'number' && length > text['max_len']) problems.push(`${path}: at most ${text['max_len']} characters, got ${length}`);
    const bytes = absent ? 0 : Buffer.byteLength(value as string);
    if (typeof text['min_bytes'] === 'number' && bytes < text['min_bytes']) problems.push(`${path}: at least ${text['min_bytes']} bytes, got ${bytes}`);
    if (typeof text['max_bytes'] === 'number' && bytes > text['max_bytes']) problems.push(`${path}: at most ${text['max_bytes']} bytes, got ${bytes}`);
  }
  if (absent) return;
  // A wrapper (UInt32Value and the like) carries the rule of the scalar it wraps.
  const scalar = typeof value === 'object' ? ((value as { value?: unknown }).value ?? 0) : value;
  for (const kind of ['uint32', 'uint64', 'int32', 'int64', 'double', 'float', 'sint32', 'sint64', 'fixed32', 'fixed64']) {
    const bounds = rules[kind];
    if (bounds !== undefined) checkBounds(Number(scalar), bounds, (b) => Number(b), path, problems);
  }
  const duration = rules['duration'];
  if (duration !== undefined && typeof value === 'object') checkBounds(seconds(value), duration, seconds, path, problems);
}

function seconds(value: unknown): number {
  const { seconds: s = 0, nanos = 0 } = (value ?? {}) as { seconds?: number | string; nanos?: number };
  return Number(s) + nanos / 1e9;
}

function checkBounds(actual: number, bounds: Record<string, unknown>, toNumber: (bound: unknown) => number, path: string, problems: string[]): void {
  if (bounds['gt'] !== undefined && !(actual > toNumber(bounds['gt']))) problems.push(`${path}: must be > ${toNumber(bounds['gt'])}, got ${actual}`);
  if (bounds['gte'] !== undefined && !(actual >= toNumber(bounds['gte']))) problems.push(`${path}: must be >= ${toNumber(bounds['gte'])}, got ${actual}`);
  if (bounds['lt'] !== undefined && !(actual < toNumber(bounds['lt']))) problems.push(`${path}: must be < ${toNumber(bounds['lt'])}, got ${actual}`);
  if (bounds['lte'] !== undefined && !(actual <= toNumber(bounds['lte']))) problems.push(`${path}: must be <= ${toNumber(bounds['lte'])}, got ${actual}`);
}
