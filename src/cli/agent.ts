import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { WorkloadAgent } from '../agent/agent.js';
import type { ControlPlaneCredentials } from '../agent/certificate-client.js';
import { UsageError } from '../errors.js';
import type { Logger } from 'pino';
import { loadEnvoyApi } from '../xds/protos.js';
import { parseTtl } from '../security/tokens.js';
import { parseRefreshInterval } from './refresh-interval.js';

/** `meshbridge agent`: options to a running agent; resolves with its exit code after SIGTERM/SIGINT. */
export async function agent(args: string[], log: Logger): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      xds: { type: 'string', multiple: true, default: ['127.0.0.1:15010'] },
      out: { type: 'string' },
      'sds-socket': { type: 'string' },
      'spiffe-id': { type: 'string' },
      ttl: { type: 'string' },
      'bundle-refresh': { type: 'string' },
      ca: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      'token-file': { type: 'string' },
      'server-name': { type: 'string' },
    },
    strict: true,
  });
  if (values.out === undefined) throw new UsageError('agent needs --out DIR (where cert-chain.pem, key.pem and root-cert.pem go)');
  if ((values.cert === undefined) !== (values.key === undefined)) throw new UsageError('--cert and --key go together');
  if (values.cert !== undefined && values.ca === undefined) throw new UsageError('--cert/--key need --ca (mutual TLS to meshbridge)');
  const read = (file: string) => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new UsageError(`cannot read ${file}: ${(error as Error).message}`);
    }
  };
  const credentials: ControlPlaneCredentials = {
    ...(values.ca === undefined ? {} : { ca: read(values.ca) }),
    ...(values.cert === undefined ? {} : { cert: read(values.cert), key: read(values.key!) }),
    ...(values['token-file'] === undefined ? {} : { token: read(values['token-file']).toString('utf8').trim() }),
    ...(values['server-name'] === undefined ? {} : { serverName: values['server-name'] }),
  };
  const workload = new WorkloadAgent(
    {
      xds: values.xds,
      credentials,
      outDir: values.out,
      ...(values['sds-socket'] === undefined ? {} : { sdsSocket: values['sds-socket'] }),
      ...(values['spiffe-id'] === undefined ? {} : { spiffeId: values['spiffe-id'] }),
      ...(values.ttl === undefined ? {} : { validitySeconds: parseTtl(values.ttl) }),
      ...(values['bundle-refresh'] === undefined ? {} : { bundleRefreshMs: parseRefreshInterval('--bundle-refresh', values['bundle-refresh']) * 1000 }),
    },
    loadEnvoyApi(),
    log,
  );
  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await Promise.race([workload.start(), stopped]);
  const signal = await stopped;
  log.info({ signal }, 'agent stopping');
  await workload.stop();
  return 0;
}
