import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import type { Diagnostic } from '../errors.js';
import picomatch from 'picomatch';
import { DEFAULT_FILE_BYTES, isInside } from '../istio/file-store.js';
import { formatPath, unknownFields } from '../istio/schema-report.js';
import { DEFAULT_TRUST_DOMAIN } from '../model/service.js';

const hostPort = z
  .string({ error: 'must be "host:port"' })
  .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, { error: 'must be "host:port", e.g. 127.0.0.1:15010' });

/** Where `meshbridge run` serves, unless the config says otherwise; `status` and `catalog` look there by default. */
export const DEFAULT_XDS_LISTEN = '127.0.0.1:15010';
export const DEFAULT_ADMIN_LISTEN = '127.0.0.1:15014';

/** A certificate and its key, PEM files relative to the config file; re-read when they change. */
const tlsFiles = z.object({
  certFile: z.string({ error: 'must be a PEM file path' }).min(1),
  keyFile: z.string({ error: 'must be a PEM file path' }).min(1),
  /** How often the files are checked for a rotation. */
  reloadIntervalMs: z.number().int().min(100).max(3_600_000).default(5_000),
});

const registryName = z
  .string({ error: 'must be a name' })
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, { error: 'must be lower-case letters, digits and dashes' });

const identityNamespace = z
  .string({ error: 'must be a namespace name' })
  .regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, { error: 'must be a namespace name: lower-case letters, digits and dashes, at most 63' })
  .default('default');

const fileRegistry = z.object({
  kind: z.literal('file'),
  name: registryName,
  paths: z.array(z.string(), { error: 'must be a list of files or globs' }).min(1, { error: 'must list at least one path' }),
});

const positiveInt = (max: number) =>
  z.number({ error: 'must be a number' }).int({ error: 'must be a whole number' }).min(1, { error: 'must be at least 1' }).max(max, {
    error: `must be at most ${max}`,
  });

const consulRegistry = z
  .object({
    kind: z.literal('consul'),
    name: registryName,
    address: z
      .string({ error: 'must be a URL' })
      .regex(/^https?:\/\/(\[[0-9a-fA-F:.]+\]|[^\s/:]+)(:\d{1,5})?\/?$/, {
        error: 'must be "http://host:port" or "https://host:port"',
      })
      .transform((a) => a.replace(/\/$/, ''))
      .default('http://127.0.0.1:8500'),
    /** PEM CA bundle for an https address; relative to the config file. */
    caFile: z.string().optional(),
    certFile: z.string().optional(),
    keyFile: z.string().optional(),
    /** The ACL token lives in a file or an environment variable, never in this file or on a command line. */
    tokenFile: z.string().optional(),
    tokenEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'must be an environment variable name' }).optional(),
    token: z
      .unknown()
      .refine((value) => value === undefined, {
        error: 'a token must not be written in the config; use tokenFile or tokenEnv',
      })
      .optional(),
    datacenters: z.array(z.string().min(1)).min(1, { error: 'must list at least one datacenter' }).optional(),
    localDatacenter: z.string().min(1).optional(),
    domain: z
      .string()
      .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, { error: 'must be a DNS domain such as consul' })
      .default('consul'),
    services: z
      .object({
        /** Service names or globs to keep. */
        names: z.array(z.string()).optional(),
        /** Keep instances that carry every one of these tags. */
        tags: z.array(z.string()).optional(),
        /** A Consul filter expression over /v1/health/service entries, e.g. Service.Meta.team == "pay". */
        filter: z.string().optional(),
      })
      .prefault({}),
    /**
     * Protocol of a service none of whose instances says (meta or tag `protocol`). Unset: TCP for
     * Envoy, like Consul's own default, and gRPC for proxyless clients that dial the service by name.
     */
    defaultProtocol: z.enum(['HTTP', 'HTTP2', 'GRPC', 'HTTPS', 'TLS', 'TCP']).optional(),
    /** A check in warning: `weight` (HEALTHY at Weights.Warning, Consul's own reading) or `degraded`. */
    warning: z.enum(['weight', 'degraded']).default('weight'),
    /** The service port when instances register different ports. */
    servicePort: z.enum(['lowest', 'most-common']).default('lowest'),
    /** Dial instances on this tagged address (lan, wan, lan_ipv6, ...) when they have one. */
    taggedAddress: z.string().optional(),
    /** Namespace of the instances' SPIFFE IDs: spiffe://<trustDomain>/ns/<namespace>/sa/<service, or meta service-account>. */
    namespace: identityNamespace,
    waitSeconds: positiveInt(600).default(60),
    concurrency: positiveInt(64).default(8),
    minIntervalMs: z.number().int().min(0).default(100),
    sweepMinIntervalMs: z.number().int().min(0).default(1000),
    initialSyncTimeoutMs: z.number().int().min(0).default(10_000),
    requestTimeoutMs: positiveInt(600_000).default(10_000),
    backoff: z
      .object({ initialMs: positiveInt(60_000).default(250), maxMs: positiveInt(600_000).default(10_000) })
      .prefault({}),
  })
  .refine((c) => !(c.tokenFile !== undefined && c.tokenEnv !== undefined), {
    error: 'set tokenFile or tokenEnv, not both',
    path: ['tokenEnv'],
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
    /** Namespace of the instances' SPIFFE IDs: spiffe://<trustDomain>/ns/<namespace>/sa/<app, or metadata service-account>. */
    namespace: identityNamespace,
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

const registry = z.discriminatedUnion('kind', [fileRegistry, consulRegistry, eurekaRegistry], {
  error: (issue) =>
    issue.code === 'invalid_union' && 'discriminator' in issue
      ? 'kind must be file, consul or eureka'
      : undefined,
});

export const configSchema = z.object({
  xds: z
    .object({
      listen: hostPort.default(DEFAULT_XDS_LISTEN),
      /**
       * The xDS port's accept queue (listen(2) backlog): connections the kernel
       * completes before meshbridge accepts them. A fleet connecting at once past
       * it waits for SYN retransmits; the kernel caps it at net.core.somaxconn.
       */
      listenBacklog: z.number().int().min(1).max(65_535).default(4_096),
      /** Address sidecar listeners bind to on each VM; there is no iptables capture there. */
      sidecarBind: z.string().default('127.0.0.1'),
      /**
       * How long a service that left the catalog is still offered, without
       * endpoints, to proxyless gRPC clients (see src/daemon/vanished-services.ts).
       */
      proxylessRetentionMs: z.number().int().min(0).default(600_000),
      /** Streams that may have a push being written at once; the rest wait, their changes coalesced. */
      pushConcurrency: z.number().int().min(1).default(64),
      /** How long a push to a client that does not read may hold its slot. */
      pushSlotTimeoutMs: z.number().int().min(1).default(2_000),
      /**
       * At startup, ADS streams are refused (UNAVAILABLE "not ready", so
       * proxies keep the config they have) until every registry has synced or
       * its saved state is loaded; after this long they are served anyway.
       */
      readyTimeoutMs: z.number().int().min(0).default(30_000),
      /** Concurrent ADS/CSDS streams one client connection may hold; Envoy uses one, a gRPC client a few. */
      maxStreamsPerConnection: z.number().int().min(1).default(100),
      /** Keepalive ping interval and timeout: how soon a vanished peer's streams are closed. */
      keepaliveTimeMs: z.number().int().min(1_000).default(30_000),
      keepaliveTimeoutMs: z.number().int().min(100).default(10_000),
      /** A stream whose client has not read its responses for this long (flow-control window closed) is closed. */
      stalledStreamTimeoutMs: z.number().int().min(1_000).default(60_000),
      /** Make-before-break: the longest a route waits for its clusters to be ACKed, or a cluster's removal for its routes'. */
      makeBeforeBreakTimeoutMs: z.number().int().min(0).max(60_000).default(5_000),
      /** TLS on the xDS port; with clientCaFile, every client must present a certificate that CA signed. */
      tls: tlsFiles.extend({ clientCaFile: z.string().min(1).optional() }).optional(),
      /** Serving plaintext on an address other than loopback must be asked for in so many words. */
      allowPlaintext: z.boolean().default(false),
    })
    .prefault({}),
  admin: z
    .object({
      listen: hostPort.default(DEFAULT_ADMIN_LISTEN),
      /** Host header names accepted besides loopback ones (DNS rebinding defence). */
      allowedHosts: z.array(z.string().min(1)).default([]),
      tls: tlsFiles.optional(),
      /** /debug/* needs an operator token even on loopback. Always on when bound beyond loopback. */
      requireToken: z.boolean().default(false),
    })
    .prefault({}),
  security: z
    .object({
      /** The trust domain of the SPIFFE IDs in client certificates: spiffe://<trustDomain>/node/<id>. */
      trustDomain: z
        .string()
        .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, { error: 'must be a trust domain such as meshbridge.local' })
        .default(DEFAULT_TRUST_DOMAIN),
      /** Every xDS stream must show who it is (client certificate or token); on by default with xds.tls. */
      requireIdentity: z.boolean().optional(),
      /** How often live streams are checked against token expiry and revocation. */
      revocationCheckIntervalMs: z.number().int().min(100).max(600_000).default(5_000),
      /**
       * The workload CA (issue 14): signs SPIFFE certificates for the workloads on each node
       * (meshbridge agent). A root is created in the state directory unless an intermediate's files are given.
       */
      workloadCa: z
        .object({
          certFile: z.string().min(1).optional(),
          keyFile: z.string().min(1).optional(),
          /** The existing PKI's root certificates: the trust bundle sent to workloads. */
          rootsFile: z.string().min(1).optional(),
          certificateTtlMs: z.number().int().min(60_000).max(30 * 86_400_000).default(86_400_000),
          /** The longest lifetime an agent may ask for. */
          maxCertificateTtlMs: z.number().int().min(60_000).max(365 * 86_400_000).default(86_400_000),
          /** How often the root schedule in the state directory is checked for a rotation. */
          reloadIntervalMs: z.number().int().min(100).max(3_600_000).default(5_000),
          /** Signings in progress at once; beyond it callers get RESOURCE_EXHAUSTED and retry. */
          maxConcurrentSigns: z.number().int().min(1).max(1024).default(16),
        })
        .refine((c) => [c.certFile, c.keyFile, c.rootsFile].every((f) => f === undefined) || [c.certFile, c.keyFile, c.rootsFile].every((f) => f !== undefined), {
          error: 'give certFile, keyFile and rootsFile together (an intermediate of an existing PKI), or none (a root in the state directory)',
        })
        .refine((c) => c.maxCertificateTtlMs >= c.certificateTtlMs, { error: 'maxCertificateTtlMs must be at least certificateTtlMs', path: ['maxCertificateTtlMs'] })
        .optional(),
      /** Narrows what a node may read: the first rule whose nodes match applies; a node no rule matches reads everything. */
      access: z
        .array(
          z.object({
            nodes: z.array(z.string().min(1)).min(1, { error: 'must list at least one node id or glob' }),
            services: z.array(z.string().min(1)),
          }),
        )
        .default([]),
    })
    .prefault({}),
  log: z
    .object({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      /** Longest string a log line carries whole (node ids, NACK messages and names come from clients). */
      maxFieldChars: z.number().int().min(16).default(1024),
      /** Longest list a log line carries whole. */
      maxListItems: z.number().int().min(1).default(20),
      /** Same warning from the same stream or registry logged at most this often per minute (0: no limit). */
      repeatedWarningsPerMinute: z.number().int().min(0).default(20),
    })
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
  /**
   * File registry and policy paths must lie under the config file's
   * directory, symbolic links included, unless this says otherwise.
   */
  files: z.object({ allowOutside: z.boolean().default(false) }).prefault({}),
  limits: z
    .object({
      /** Istio YAML files (file registries, policy) larger than this are rejected before parsing. */
      fileBytes: positiveInt(1024 * 1024 * 1024).default(DEFAULT_FILE_BYTES),
      /** Largest Consul or Eureka response body read; a larger one is a failed read (last good state kept). */
      registryResponseBytes: z.number().int().min(1024).default(64 * 1024 * 1024),
      /** Largest saved registry state loaded at startup (see src/registries/saved-state.ts). */
      savedStateBytes: z.number().int().min(1024).default(256 * 1024 * 1024),
      /** Resource names one xDS stream may subscribe to, all types together; past it the stream ends with RESOURCE_EXHAUSTED. */
      maxNamesPerStream: z.number().int().min(1).default(100_000),
      /** Longest node id accepted (bytes); a longer one ends the stream with INVALID_ARGUMENT. */
      nodeIdBytes: z.number().int().min(64).default(4_096),
      /** Most text in the rest of the node (metadata, locality, cluster...; not Envoy's extensions list); past it, INVALID_ARGUMENT. */
      nodeMetadataBytes: z.number().int().min(1024).default(65_536),
      /** Listener names that do not exist one proxyless stream is answered with a placeholder for (fail fast); 0 turns placeholders off. */
      maxPlaceholdersPerStream: z.number().int().min(0).default(1_000),
    })
    .prefault({}),
  /**
   * Where meshbridge keeps what must outlive a restart (see resolveStateDir);
   * relative to the config file.
   */
  stateDir: z.string().min(1, { error: 'must be a directory path' }).optional(),
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
  const baseDir = dirname(resolve(file));
  if (!result.data.files.allowOutside) diagnostics.push(...pathsOutside(result.data, baseDir, file));
  if (diagnostics.some((d) => d.severity === 'error')) return { diagnostics };
  return { config: { ...result.data, baseDir, file: resolve(file) }, diagnostics };
}

/** File registry and policy paths (after `..` is resolved) whose fixed part is not under `baseDir`. */
function pathsOutside(config: z.output<typeof configSchema>, baseDir: string, file: string): Diagnostic[] {
  const listed: { field: string; path: string }[] = [
    ...config.registries.flatMap((r, i) => (r.kind === 'file' ? r.paths.map((path, j) => ({ field: `registries[${i}].paths[${j}]`, path })) : [])),
    ...config.policy.paths.map((path, j) => ({ field: `policy.paths[${j}]`, path })),
  ];
  return listed.flatMap(({ field, path }): Diagnostic[] => {
    const absolute = resolve(baseDir, path);
    const fixed = picomatch.scan(absolute).base || absolute;
    if (isInside(fixed, baseDir)) return [];
    return [{ severity: 'error', source: file, field, message: `${path} resolves outside the config directory ${baseDir}; set files.allowOutside: true to allow it` }];
  });
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

/**
 * The state directory: `stateDir` from the config (relative to its file);
 * else systemd's $STATE_DIRECTORY (set by `StateDirectory=`, first entry);
 * else $XDG_STATE_HOME/meshbridge, else ~/.local/state/meshbridge.
 */
export function resolveStateDir(config: Pick<Config, 'stateDir' | 'baseDir'>, env: NodeJS.ProcessEnv = process.env): string {
  if (config.stateDir !== undefined) return isAbsolute(config.stateDir) ? config.stateDir : resolve(config.baseDir, config.stateDir);
  const systemd = env['STATE_DIRECTORY']?.split(':')[0];
  if (systemd) return systemd;
  const xdg = env['XDG_STATE_HOME'];
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.local', 'state'), 'meshbridge');
}
