import protobuf from 'protobufjs';
import protoFiles from '../../src/xds/proto-files.json' with { type: 'json' };
import { loadEnvoyRoot } from '../../src/xds/protos.js';

/** Parsed from the .proto files rather than the served descriptor, so a resource is checked against Envoy's own definitions. */
const root: protobuf.Root = loadEnvoyRoot(protoFiles.files);

/**
 * Every problem protobufjs would hide: it drops unknown fields and bad enum
 * names without a word when encoding, so a misspelled field would reach
 * Envoy as nothing at all. Walks a resource against its message type.
 */
export function protoProblems(typeUrl: string, value: unknown): string[] {
  const problems: string[] = [];
  check(root.lookupType(typeUrl.slice(typeUrl.indexOf('/') + 1)), value, typeUrl.slice(typeUrl.lastIndexOf('.') + 1), problems);
  return problems;
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
    check(root.lookupType(url.slice(url.indexOf('/') + 1)), body, `${path}<${url.slice(url.lastIndexOf('.') + 1)}>`, problems);
    return;
  }
  for (const [key, item] of Object.entries(value)) {
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
}
