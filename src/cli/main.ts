import { existsSync, readFileSync } from 'node:fs';
import { limitHeapGrowth } from '../daemon/heap.js';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { CatalogzBody, SynczBody } from '../admin/debug.js';
import { DEFAULT_ADMIN_LISTEN, loadConfig } from '../config/config.js';
import { Daemon } from '../daemon/daemon.js';
import { MeshbridgeError, UsageError, formatDiagnostic } from '../errors.js';
import { createLogger } from '../log.js';
import { fetchAdmin } from './admin-client.js';
import type { AdminCredentials } from './admin-client.js';
import { envoyBootstrap, grpcBootstrap } from './bootstrap.js';
import { certificateProvidersFromPolicy } from './policy-certificates.js';
import { formatCatalog } from './catalog.js';
import { parseRefreshInterval } from './refresh-interval.js';
import { formatNodeStatus, formatStatus } from './status.js';
import { printFindings, validateFiles } from './validate.js';

/** Per command: its synopsis and what it does, shown by `meshbridge <command> --help` and, together, by `meshbridge --help`. */
const COMMAND_USAGE = {
  run: `run [--config FILE] [--log-level LEVEL]
        serve xDS and the admin API; with no --config, serves the quickstart example.
        SIGTERM/SIGINT drain and exit 0; SIGHUP reloads the config (a bad one is logged and ignored)
        --log-level (or $MESHBRIDGE_LOG_LEVEL) overrides log.level of the config, also across reloads`,
  bootstrap: `bootstrap (--envoy [--delta] | --grpc) --node-id ID [--cluster NAME] [--xds HOST:PORT]... [--locality R/Z/S] [--admin-port N]
            [--namespace NS] [--label KEY=VALUE]... [--ca FILE [--cert FILE --key FILE] [--server-name NAME]] [--token-file FILE] [--policy FILE]...
            [--sds-socket PATH (Envoy) | --workload-certs DIR [--workload-certs-refresh 60s] (gRPC)]
        print a bootstrap that points a client at meshbridge (--delta: Envoy uses incremental xDS);
        --xds again for each replica (Envoy: all in its xds cluster; gRPC: xds_servers in fallback order);
        --namespace/--label: node metadata a Sidecar's workloadSelector matches;
        --ca: TLS to meshbridge, --cert/--key: mutual TLS, --token-file: a token from \`meshbridge token create\`;
        --policy (--grpc): DestinationRule files; declares a file_watcher certificate provider for each TLS file they name;
        --sds-socket/--workload-certs: where meshbridge agent serves the workload certificate (ISTIO_MUTUAL);
        --workload-certs-refresh: how often gRPC re-reads those files (well under half the certificate lifetime)
        --xds defaults to 127.0.0.1:15010, --cluster to the node id, --admin-port (Envoy's own) to 15000`,
  validate: `validate [--config FILE]... [FILE...]
        check Istio YAML files (every kind, across the files given) and daemon configs
        (--config, or any file with a top-level registries:); exits 1 on errors`,
  status: `status [NODE] [--admin HOST:PORT|https://HOST:PORT] [--token-file FILE] [--ca FILE] [--json]
        connected proxies and, per type, SYNCED / NACKED / STALE / NOT SENT (like istioctl proxy-status)`,
  catalog: `catalog [HOST] [--admin HOST:PORT|https://HOST:PORT] [--token-file FILE] [--ca FILE] [--json]
        services and endpoints of the merged catalog, with health and source registry`,
  ca: `ca create --dir DIR [--trust-domain TD] [--days N]
        create a CA for meshbridge's own TLS: DIR/ca.crt and DIR/ca.key (0600)
  ca issue --dir DIR (--server HOST,... | --node ID | --operator NAME) --out PREFIX [--days N] [--trust-domain TD]
        issue PREFIX.crt and PREFIX.key (0600): a server certificate for the hosts given, or a client
        certificate with the SPIFFE ID spiffe://TD/node/ID or spiffe://TD/operator/NAME
  ca rotate-workload-root [--config FILE | --state-dir DIR] [--activate-after 24h] [--overlap 48h]
        add a workload root: trusted at once, signing after --activate-after; the old root stays
        trusted for --overlap after that. A running daemon picks it up within a few seconds`,
  agent: `agent --out DIR [--xds HOST:PORT ...] [--sds-socket PATH] [--spiffe-id ID] [--ttl 24h] [--bundle-refresh 5m]
        [--ca FILE [--cert FILE --key FILE] [--server-name NAME]] [--token-file FILE]
        beside a sidecar: make a key here, have meshbridge sign it for this node's workload, write
        DIR/cert-chain.pem, DIR/key.pem (0600) and DIR/root-cert.pem, serve them to Envoy over SDS
        ("default" and "ROOTCA") on --sds-socket, and renew at half life until SIGTERM;
        --bundle-refresh: how often the trust bundle is fetched between renewals (a rotated root arrives this soon);
        --xds again for each meshbridge replica: asked in turn from the last that answered`,
  token: `token create (--node ID | --operator NAME) [--ttl 24h] [--out FILE] [--config FILE | --state-dir DIR]
        print (or write, 0600) a token signed with the key in the state directory; its id goes to stderr
  token revoke (--id ID | --token-file FILE) [--config FILE | --state-dir DIR]
        revoke a token: a running daemon refuses it and ends its streams within security.revocationCheckIntervalMs`,
} as const;
type Command = keyof typeof COMMAND_USAGE;

const ADMIN_NOTE = `  --admin defaults to $MESHBRIDGE_ADMIN or ${DEFAULT_ADMIN_LISTEN}; --token-file (an operator token) to
  $MESHBRIDGE_ADMIN_TOKEN_FILE, --ca (the CA of an https admin API) to $MESHBRIDGE_ADMIN_CA.
`;

const USAGE = `usage: meshbridge <command> [options]
       meshbridge <command> --help
       meshbridge --version

commands:
${Object.values(COMMAND_USAGE)
  .map((text) => `  ${text}\n`)
  .join('')}
${ADMIN_NOTE}`;

function isCommand(name: string | undefined): name is Command {
  return name !== undefined && Object.hasOwn(COMMAND_USAGE, name);
}

function commandUsage(command: Command): string {
  const note = command === 'status' || command === 'catalog' ? `\n${ADMIN_NOTE}` : '';
  // Commands with subcommands list each as `meshbridge <command> <subcommand> ...`.
  return `usage: ${COMMAND_USAGE[command].replace(/^  (?=\S)/gm, '  meshbridge ').replace(/^/, 'meshbridge ')}\n${note}`;
}

/** `--help`/`-h`, accepted by every command. */
const HELP_OPTION = { help: { type: 'boolean', short: 'h', default: false } } as const;

function printHelp(command: Command): number {
  process.stdout.write(commandUsage(command));
  return 0;
}

interface BuildInfo {
  readonly version: string;
  readonly commit: string;
}

/** Version and commit, written into dist/ by the build (scripts/build-dist-data.mjs). */
export function buildInfo(): BuildInfo {
  const file = join(packageRoot(), 'dist', 'build-info.json');
  try {
    const info = JSON.parse(readFileSync(file, 'utf8')) as Partial<BuildInfo>;
    if (typeof info.version === 'string' && typeof info.commit === 'string') return { version: info.version, commit: info.commit };
  } catch {
    // A checkout running from src/ before any build: say so rather than guess.
  }
  const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string };
  return { version: pkg.version, commit: 'unknown (not built)' };
}

/** How long a drain may take before the process gives up on it. */
const DRAIN_TIMEOUT_MS = 10_000;
/** Of which xDS streams get this long to end before they are cut. */
const XDS_GRACE_MS = 5_000;

/** Where the package is installed; the quickstart example ships inside it. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
}

export function quickstartConfigPath(): string {
  return join(packageRoot(), 'examples', 'quickstart', 'meshbridge.yaml');
}

async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { ...HELP_OPTION, config: { type: 'string' }, 'log-level': { type: 'string' } },
    strict: true,
  });
  if (values.help) return printHelp('run');
  limitHeapGrowth();
  const file = values.config ?? quickstartConfigPath();
  const { config, diagnostics } = await loadConfig(file);
  const fixedLevel = values['log-level'] ?? process.env.MESHBRIDGE_LOG_LEVEL;
  const log = createLogger(fixedLevel ?? config.log.level, undefined, {
    maxFieldChars: config.log.maxFieldChars,
    maxListItems: config.log.maxListItems,
    repeatedWarningsPerMinute: config.log.repeatedWarningsPerMinute,
  });
  for (const d of diagnostics) log.warn(formatDiagnostic(d));
  if (values.config === undefined) log.info({ config: file }, 'no --config given: serving the quickstart example');

  // Whatever still holds the event loop once run() is done must not keep a stopped daemon alive.
  const exitSoon = () => setTimeout(() => process.exit(), 2_000).unref();
  const daemon = new Daemon(config, log);
  let ports: { xdsPort: number; adminPort: number };
  try {
    ports = await daemon.start();
  } catch (error) {
    log.error({ err: error }, 'cannot start');
    await daemon.stop(1_000).catch(() => undefined);
    log.flush();
    exitSoon();
    throw error;
  }
  const host = (listen: string) => listen.replace(/:\d+$/, '');
  log.info(
    { xds: `${host(config.xds.listen)}:${ports.xdsPort}`, admin: `${host(config.admin.listen)}:${ports.adminPort}`, config: file },
    'meshbridge started',
  );

  const reload = async (): Promise<void> => {
    log.info({ config: file }, 'SIGHUP: reloading the config');
    try {
      const next = await loadConfig(file);
      for (const d of next.diagnostics) log.warn(formatDiagnostic(d));
      const { applied, needsRestart } = await daemon.reload(next.config);
      const changes = [...applied];
      if (fixedLevel === undefined && next.config.log.level !== log.level) {
        log.level = next.config.log.level;
        changes.push('log.level');
      }
      if (needsRestart.length > 0) {
        log.warn({ needsRestart }, `changed in the config but applied only by a restart: ${needsRestart.join(', ')}`);
      }
      daemon.metrics.reloaded('success');
      log.info({ config: file, applied: changes }, changes.length > 0 ? `config reloaded: ${changes.join(', ')}` : 'config reloaded: nothing changed');
    } catch (error) {
      daemon.metrics.reloaded('failure');
      log.error({ config: file, err: error }, `config reload failed; the running config stays in force: ${(error as Error).message}`);
    }
  };
  const onHangup = () => void reload();
  process.on('SIGHUP', onHangup);

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  process.off('SIGHUP', onHangup);
  process.removeAllListeners('SIGTERM').removeAllListeners('SIGINT');
  const force = (second: NodeJS.Signals) => {
    log.warn({ signal: second }, 'second signal while draining: exiting now');
    log.flush();
    process.exit(1);
  };
  process.once('SIGTERM', force);
  process.once('SIGINT', force);

  log.info({ signal, timeoutMs: DRAIN_TIMEOUT_MS }, 'draining');
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const drained = await Promise.race([
    daemon.stop(XDS_GRACE_MS).then(() => true),
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), DRAIN_TIMEOUT_MS))),
  ]);
  clearTimeout(timer);
  exitSoon();
  if (!drained) {
    log.error({ timeoutMs: DRAIN_TIMEOUT_MS }, 'drain did not finish in time; exiting anyway');
    log.flush();
    return 1;
  }
  log.info({ ms: Date.now() - started }, 'stopped');
  log.flush();
  return 0;
}

/** Bootstraps are read by processes started elsewhere: file names in them are absolute. */
function absolute(file: string | undefined): string | undefined {
  return file === undefined ? undefined : resolve(file);
}

function readTokenFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (error) {
    throw new UsageError(`cannot read --token-file ${file}: ${(error as Error).message}`);
  }
  if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(text)) throw new UsageError(`--token-file ${file} does not hold a token (meshbridge token create --out FILE)`);
  return text;
}

function parseLabels(values: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const value of values) {
    const equals = value.indexOf('=');
    if (equals <= 0) throw new UsageError(`--label must be KEY=VALUE, got "${value}"`);
    labels[value.slice(0, equals)] = value.slice(equals + 1);
  }
  return labels;
}

async function bootstrap(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      ...HELP_OPTION,
      envoy: { type: 'boolean', default: false },
      grpc: { type: 'boolean', default: false },
      delta: { type: 'boolean', default: false },
      'node-id': { type: 'string' },
      cluster: { type: 'string' },
      xds: { type: 'string', multiple: true, default: ['127.0.0.1:15010'] },
      locality: { type: 'string' },
      namespace: { type: 'string' },
      label: { type: 'string', multiple: true, default: [] },
      'admin-port': { type: 'string', default: '15000' },
      ca: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      'token-file': { type: 'string' },
      'server-name': { type: 'string' },
      policy: { type: 'string', multiple: true },
      'sds-socket': { type: 'string' },
      'workload-certs': { type: 'string' },
      'workload-certs-refresh': { type: 'string' },
    },
    strict: true,
  });
  if (values.help) return printHelp('bootstrap');
  if (values.policy !== undefined && !values.grpc) throw new UsageError('--policy is for --grpc; Envoy reads certificate files itself');
  if (values['sds-socket'] !== undefined && !values.envoy) throw new UsageError('--sds-socket is for --envoy; gRPC reads --workload-certs');
  if (values['workload-certs'] !== undefined && !values.grpc) throw new UsageError('--workload-certs is for --grpc; Envoy reads --sds-socket');
  if (values['workload-certs-refresh'] !== undefined && values['workload-certs'] === undefined) throw new UsageError('--workload-certs-refresh needs --workload-certs');
  if (values.envoy === values.grpc) throw new UsageError('bootstrap needs exactly one of --envoy or --grpc');
  if (!values['node-id']) throw new UsageError('bootstrap needs --node-id');
  if (values.delta && !values.envoy) throw new UsageError('--delta is for --envoy; gRPC clients speak state-of-the-world xDS');
  const options = {
    nodeId: values['node-id'],
    cluster: values.cluster ?? values['node-id'],
    xds: values.xds,
    namespace: values.namespace,
    labels: parseLabels(values.label),
    adminPort: Number(values['admin-port']),
    locality: values.locality,
    delta: values.delta,
    caFile: absolute(values.ca),
    certFile: absolute(values.cert),
    keyFile: absolute(values.key),
    serverName: values['server-name'],
    tokenFile: absolute(values['token-file']),
    token: values['token-file'] === undefined ? undefined : readTokenFile(values['token-file']),
    certificateProviders: values.policy === undefined ? undefined : await certificateProvidersFromPolicy(values.policy),
    sdsSocket: absolute(values['sds-socket']),
    workloadCertDir: absolute(values['workload-certs']),
    workloadCertRefreshSeconds: values['workload-certs-refresh'] === undefined ? undefined : parseRefreshInterval('--workload-certs-refresh', values['workload-certs-refresh']),
  };
  process.stdout.write(values.envoy ? envoyBootstrap(options) : grpcBootstrap(options));
  return 0;
}

async function validate(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { ...HELP_OPTION, config: { type: 'string', multiple: true } },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) return printHelp('validate');
  const configs = values.config ?? [];
  if (positionals.length + configs.length === 0) throw new UsageError('validate needs at least one file');
  const findings = await validateFiles(positionals, configs);
  printFindings(findings, process.stdout);
  const errors = findings.filter((f) => f.severity === 'error').length;
  process.stdout.write(`${positionals.length + configs.length} file(s), ${errors} error(s), ${findings.length - errors} warning(s)\n`);
  return errors > 0 ? 1 : 0;
}

const ADMIN_OPTIONS = {
  ...HELP_OPTION,
  admin: { type: 'string' },
  json: { type: 'boolean', default: false },
  'token-file': { type: 'string' },
  ca: { type: 'string' },
} as const;

/** An operator token and the admin API's CA, from flags or $MESHBRIDGE_ADMIN_TOKEN_FILE / $MESHBRIDGE_ADMIN_CA. */
function adminCredentials(values: { 'token-file'?: string; ca?: string }): AdminCredentials {
  const tokenFile = values['token-file'] ?? process.env.MESHBRIDGE_ADMIN_TOKEN_FILE;
  const caFile = values.ca ?? process.env.MESHBRIDGE_ADMIN_CA;
  let ca: Buffer | undefined;
  if (caFile) {
    try {
      ca = readFileSync(caFile);
    } catch (error) {
      throw new UsageError(`cannot read --ca ${caFile}: ${(error as Error).message}`);
    }
  }
  return { ...(tokenFile ? { token: readTokenFile(tokenFile) } : {}), ...(ca ? { ca } : {}) };
}

function adminAddress(value: string | undefined): string {
  return value ?? process.env.MESHBRIDGE_ADMIN ?? DEFAULT_ADMIN_LISTEN;
}

async function status(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: ADMIN_OPTIONS, allowPositionals: true, strict: true });
  if (values.help) return printHelp('status');
  if (positionals.length > 1) throw new UsageError('status takes at most one node id');
  const body = await fetchAdmin<SynczBody>(adminAddress(values.admin), '/debug/syncz', undefined, adminCredentials(values));
  const node = positionals[0];
  if (values.json) {
    const proxies = node === undefined ? body.proxies : body.proxies.filter((p) => p.node === node);
    process.stdout.write(`${JSON.stringify({ proxies }, null, 2)}\n`);
    return node !== undefined && proxies.length === 0 ? 1 : 0;
  }
  if (node === undefined) {
    process.stdout.write(formatStatus(body));
    return 0;
  }
  const detail = formatNodeStatus(body, node);
  if (detail === undefined) {
    process.stderr.write(`meshbridge: node "${node}" is not connected\n`);
    return 1;
  }
  process.stdout.write(detail);
  return 0;
}

async function catalog(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: ADMIN_OPTIONS, allowPositionals: true, strict: true });
  if (values.help) return printHelp('catalog');
  if (positionals.length > 1) throw new UsageError('catalog takes at most one hostname');
  const host = positionals[0];
  const query = host === undefined ? '' : `?host=${encodeURIComponent(host.toLowerCase())}`;
  const body = await fetchAdmin<CatalogzBody>(adminAddress(values.admin), `/debug/catalogz${query}`, undefined, adminCredentials(values));
  if (host !== undefined && body.services.length === 0) {
    process.stderr.write(`meshbridge: no service "${host}" in the catalog\n`);
    return 1;
  }
  process.stdout.write(values.json ? `${JSON.stringify(body, null, 2)}\n` : formatCatalog(body));
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'run':
        return await run(rest);
      case 'bootstrap':
        return await bootstrap(rest);
      case 'validate':
        return await validate(rest);
      case 'status':
        return await status(rest);
      case 'catalog':
        return await catalog(rest);
      case 'agent': {
        if (rest.includes('--help') || rest.includes('-h')) return printHelp(command);
        const level = process.env.MESHBRIDGE_LOG_LEVEL ?? 'info';
        return await (await import('./agent.js')).agent(rest, createLogger(level));
      }
      case 'ca':
      case 'token':
        // Their subcommands parse their own options; help is answered before any of them runs.
        if (rest.includes('--help') || rest.includes('-h')) return printHelp(command);
        // X.509 generation is loaded only by the commands that use it.
        return command === 'ca' ? await (await import('./security.js')).ca(rest) : await (await import('./security.js')).token(rest);
      case '--version':
      case '-V':
      case 'version': {
        const { version, commit } = buildInfo();
        process.stdout.write(`meshbridge ${version} (commit ${commit})\n`);
        return 0;
      }
      case 'help':
        if (isCommand(rest[0])) return printHelp(rest[0]);
        process.stdout.write(USAGE);
        return 0;
      case undefined:
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (error) {
    if (error instanceof UsageError || String((error as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`meshbridge: ${(error as Error).message}\n\n${isCommand(command) ? commandUsage(command) : USAGE}`);
      return 2;
    }
    if (error instanceof MeshbridgeError) {
      process.stderr.write(`meshbridge: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}
