import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/config.js';
import { Daemon } from '../daemon/daemon.js';
import { MeshbridgeError, UsageError, formatDiagnostic } from '../errors.js';
import { createLogger } from '../log.js';
import { envoyBootstrap, grpcBootstrap } from './bootstrap.js';
import { printFindings, validateFiles } from './validate.js';

const USAGE = `usage: meshbridge <command> [options]

commands:
  run [--config FILE] [--log-level LEVEL]
        serve xDS; with no --config, serves the quickstart example
  bootstrap (--envoy [--delta] | --grpc) --node-id ID [--cluster NAME] [--xds HOST:PORT] [--locality R/Z/S] [--admin-port N]
        print a bootstrap that points a client at meshbridge (--delta: Envoy uses incremental xDS)
  validate FILE...
        check Istio YAML files (ServiceEntry, WorkloadEntry); exits 1 on errors
`;

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
    options: { config: { type: 'string' }, 'log-level': { type: 'string' } },
    strict: true,
  });
  const file = values.config ?? quickstartConfigPath();
  const { config, diagnostics } = await loadConfig(file);
  const log = createLogger(values['log-level'] ?? process.env.MESHBRIDGE_LOG_LEVEL ?? config.log.level);
  for (const d of diagnostics) log.warn(formatDiagnostic(d));
  if (values.config === undefined) log.info({ config: file }, 'no --config given: serving the quickstart example');

  const daemon = new Daemon(config, log);
  const { xdsPort } = await daemon.start();
  log.info({ xds: `${config.xds.listen.replace(/:\d+$/, '')}:${xdsPort}`, config: file }, 'meshbridge started');

  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      log.info({ signal }, 'draining');
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  await daemon.stop();
  log.info('stopped');
  log.flush();
  return 0;
}

function bootstrap(args: string[]): number {
  const { values } = parseArgs({
    args,
    options: {
      envoy: { type: 'boolean', default: false },
      grpc: { type: 'boolean', default: false },
      delta: { type: 'boolean', default: false },
      'node-id': { type: 'string' },
      cluster: { type: 'string' },
      xds: { type: 'string', default: '127.0.0.1:15010' },
      locality: { type: 'string' },
      'admin-port': { type: 'string', default: '15000' },
    },
    strict: true,
  });
  if (values.envoy === values.grpc) throw new UsageError('bootstrap needs exactly one of --envoy or --grpc');
  if (!values['node-id']) throw new UsageError('bootstrap needs --node-id');
  if (values.delta && !values.envoy) throw new UsageError('--delta is for --envoy; gRPC clients speak state-of-the-world xDS');
  const options = {
    nodeId: values['node-id'],
    cluster: values.cluster ?? values['node-id'],
    xds: values.xds,
    adminPort: Number(values['admin-port']),
    locality: values.locality,
    delta: values.delta,
  };
  process.stdout.write(values.envoy ? envoyBootstrap(options) : grpcBootstrap(options));
  return 0;
}

async function validate(args: string[]): Promise<number> {
  const { positionals } = parseArgs({ args, allowPositionals: true, strict: true });
  if (positionals.length === 0) throw new UsageError('validate needs at least one file');
  const findings = await validateFiles(positionals);
  printFindings(findings, process.stdout);
  const errors = findings.filter((f) => f.severity === 'error').length;
  process.stdout.write(`${positionals.length} file(s), ${errors} error(s), ${findings.length - errors} warning(s)\n`);
  return errors > 0 ? 1 : 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'run':
        return await run(rest);
      case 'bootstrap':
        return bootstrap(rest);
      case 'validate':
        return await validate(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (error) {
    if (error instanceof UsageError || String((error as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`meshbridge: ${(error as Error).message}\n\n${USAGE}`);
      return 2;
    }
    if (error instanceof MeshbridgeError) {
      process.stderr.write(`meshbridge: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}
