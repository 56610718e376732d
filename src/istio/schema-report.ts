import type { z } from 'zod';
import type { Diagnostic } from '../errors.js';

export type FieldPath = readonly PropertyKey[];

/** `['spec', 'endpoints', 2, 'address']` -> `spec.endpoints[2].address` */
export function formatPath(path: FieldPath): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

export interface DocumentLocation {
  readonly source: string;
  readonly document: number;
}

export function issuesToDiagnostics(
  issues: readonly z.core.$ZodIssue[],
  at: DocumentLocation,
  prefix: FieldPath,
): Diagnostic[] {
  return issues.map((issue) => ({
    severity: 'error',
    source: at.source,
    document: at.document,
    field: formatPath([...prefix, ...issue.path]),
    message: issue.message,
  }));
}

/**
 * Fields a schema does not know. Schemas strip them so parsing succeeds, but a
 * user who wrote them expects an effect, so each one is reported as a warning
 * rather than dropped in silence.
 */
export function unknownFields(schema: z.ZodType, value: unknown, path: FieldPath = []): FieldPath[] {
  const def = (schema as unknown as { _zod: { def: SchemaDef } })._zod.def;
  switch (def.type) {
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'readonly':
    case 'catch':
      return def.innerType === undefined ? [] : unknownFields(def.innerType, value, path);
    case 'pipe':
      return def.in === undefined ? [] : unknownFields(def.in, value, path);
    case 'array':
      if (!Array.isArray(value) || def.element === undefined) return [];
      return value.flatMap((item, index) => unknownFields(def.element!, item, [...path, index]));
    case 'record':
      if (!isPlainObject(value) || def.valueType === undefined) return [];
      return Object.entries(value).flatMap(([key, item]) => unknownFields(def.valueType!, item, [...path, key]));
    case 'union': {
      // The option the value is (for a discriminated union, the one its discriminator names).
      const option = def.options?.find((o) => o.safeParse(value).success);
      return option === undefined ? [] : unknownFields(option, value, path);
    }
    case 'object': {
      if (!isPlainObject(value) || def.shape === undefined) return [];
      const shape = def.shape;
      return Object.entries(value).flatMap(([key, item]) =>
        key in shape ? unknownFields(shape[key]!, item, [...path, key]) : [[...path, key]],
      );
    }
    default:
      return [];
  }
}

interface SchemaDef {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  element?: z.ZodType;
  valueType?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  options?: z.ZodType[];
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
