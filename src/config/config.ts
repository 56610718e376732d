import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import type { Diagnostic } from '../errors.js';
import { formatPath, unknownFields } from '../policy/istio/schema-report.js';

const hostPort = z
  .string({ error: 'must be "host:port"' })
  .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, { error: 'must be "host:port", e.g. 127.0.0.1:15010' });

const registryName = z
  .string({ error: 'must be a name' })
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, { error: 'must be lower-case letters, digits and dashes' });

const fileRegistry = z.object({
  kind: z.literal('file'),
  name: registryName,
  paths: z.array(z.string(), { error: 'must be a list of files or globs' }).min(1, { error: 'must list at least one path' }),
});

const eurekaRegistry = z
  .object({
    kind: z.literal('eureka'),
    name: registryName,
    /** Spring Cloud's `http://host:8761/eureka`, Netflix's `http://host:8080/eureka/v2`; tried in order, with failover. */
    serviceUrls: z
      .array(
        z
          .string({ error: 'must be a URL' })
          .regex(/^https?:\/\/[^\s/]+(\/\S*)?$/, { error: 'must be an http:// or https:// URL such as http://127.0.0.1:8761/eureka' }),
        { error: 'must be a list of Eureka service URLs' },
      )
      .min(1, { error: 'must list at least one Eureka service URL' }),
    /** Appended to every hostname: `greeter` -> `greeter.<domain>`. */
    domain: z
      .string()
      .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, { error: 'must be a DNS domain such as eureka.local' })
      .optional(),
    /** Locality region of every endpoint (an instance's metadata `region` overrides). */
    region: z.string().default(''),
    /** Protocol of instances whose metadata has no `protocol`; Spring Boot apps speak HTTP. */
    defaultProtocol: z.enum(['HTTP', 'HTTP2', 'GRPC', 'HTTPS', 'TLS', 'TCP']).default('HTTP'),
    /** The service port when instances register different ports. */
    servicePort: z.enum(['lowest', 'most-common']).default('lowest'),
    refreshIntervalMs: z.number().int().min(50).default(30_000),
    requestTimeoutMs: z.number().int().min(50).default(8_000),
    initialSyncTimeoutMs: z.number().int().min(0).default(10_000),
    /** The server's delta retention (its retention-time-in-m-s-in-delta-queue). */
    deltaRetentionMs: z.number().int().min(1).default(180_000),
    backoff: z
      .object({ initialMs: z.number().int().min(1).default(1_000), maxMs: z.number().int().min(1).default(30_000) })
      .prefault({}),
    /** A read removing more than this share of the instances at once is held back until it persists. */
    maxDropFraction: z.number().min(0).max(1).default(0.5),
    dropGuardMinInstances: z.number().int().min(1).default(10),
    dropGuardHoldMs: z.number().int().min(0).default(120_000),
  });

const registry = z.discriminatedUnion('kind', [fileRegistry, eurekaRegistry], {
  error: (issue) =>
    issue.code === 'invalid_union' && 'discriminator' in issue
      ? 'kind must be file or eureka (consul registries are not available in this build yet)'
      : undefined,
});

export const configSchema = z.object({
  xds: z
    .object({
      listen: hostPort.default('127.0.0.1:15010'),
      /** Address sidecar listeners bind to on each VM; there is no iptables capture there. */
      sidecarBind: z.string().default('127.0.0.1'),
    })
    .prefault({}),
  admin: z.object({ listen: hostPort.default('127.0.0.1:15014') }).prefault({}),
  log: z
    .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
    .prefault({}),
  batching: z
    .object({
      /** Quiet time after a change before the catalog is rebuilt. */
      debounceMs: z.number().int().min(0).default(100),
      /** Upper bound on how long continuous churn can hold a rebuild back. */
      maxDelayMs: z.number().int().min(1).default(1000),
    })
    .prefault({})
    .refine((b) => b.maxDelayMs >= b.debounceMs, { error: 'maxDelayMs must be at least debounceMs' }),
  registries: z.array(registry, { error: 'must be a list of registries' }).min(1, { error: 'must list at least one registry' }),
  policy: z.object({ paths: z.array(z.string()).default([]) }).prefault({}),
});

export type Config = z.output<typeof configSchema> & { readonly baseDir: string; readonly file: string };
export type RegistryConfig = Config['registries'][number];

/** Validates a parsed config; errors and unknown-field warnings name the file and field. */
export function parseConfig(value: unknown, file: string): { config?: Config; diagnostics: Diagnostic[] } {
  const result = configSchema.safeParse(value ?? {});
  const diagnostics: Diagnostic[] = unknownFields(configSchema, value).map((path) => ({
    severity: 'warning',
    source: file,
    field: formatPath(path),
    message: 'unknown field, ignored',
  }));
  if (!result.success) {
    diagnostics.push(
      ...result.error.issues.map((issue): Diagnostic => ({
        severity: 'error',
        source: file,
        field: formatPath(issue.path),
        message: issue.message,
      })),
    );
    return { diagnostics };
  }
  const names = new Set<string>();
  result.data.registries.forEach((r, index) => {
    if (names.has(r.name)) {
      diagnostics.push({ severity: 'error', source: file, field: `registries[${index}].name`, message: `registry name "${r.name}" is used twice` });
    }
    names.add(r.name);
  });
  if (diagnostics.some((d) => d.severity === 'error')) return { diagnostics };
  return { config: { ...result.data, baseDir: dirname(resolve(file)), file: resolve(file) }, diagnostics };
}

export async function loadConfig(file: string): Promise<{ config: Config; diagnostics: Diagnostic[] }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config ${file}: ${(error as Error).message}`, { cause: error });
  }
  const document = parseDocument(text);
  if (document.errors.length > 0) {
    throw new ConfigError(`${file}: YAML syntax: ${document.errors[0]!.message.split('\n')[0]!.replace(/:$/, '')}`);
  }
  const { config, diagnostics } = parseConfig(document.toJS(), file);
  if (config === undefined) {
    throw new ConfigError(
      diagnostics
        .filter((d) => d.severity === 'error')
        .map((d) => `${file}: ${d.field}: ${d.message}`)
        .join('\n'),
    );
  }
  return { config, diagnostics };
}
