import { isAbsolute, resolve } from 'node:path';
import type { RegistryConfig } from '../../config/config.js';
import type { RegistryContext } from '../from-config.js';
import { ConsulRegistry } from './consul-registry.js';

type ConsulConfig = Extract<RegistryConfig, { kind: 'consul' }>;

export function consulFromConfig(config: ConsulConfig, { root, log, onBodyTooLarge }: RegistryContext): ConsulRegistry {
  return new ConsulRegistry(
    {
      name: config.name,
      address: config.address,
      caFile: config.caFile,
      certFile: config.certFile,
      keyFile: config.keyFile,
      tokenFile: config.tokenFile,
      tokenEnv: config.tokenEnv,
      datacenters: config.datacenters,
      localDatacenter: config.localDatacenter,
      domain: config.domain,
      services: config.services,
      defaultProtocol: config.defaultProtocol,
      warning: config.warning,
      servicePort: config.servicePort,
      taggedAddress: config.taggedAddress,
      namespace: config.namespace,
      initialSyncTimeoutMs: config.initialSyncTimeoutMs,
      requestTimeoutMs: config.requestTimeoutMs,
      maxBodyBytes: root.limits.registryResponseBytes,
      tuning: {
        waitSeconds: config.waitSeconds,
        concurrency: config.concurrency,
        minIntervalMs: config.minIntervalMs,
        sweepMinIntervalMs: config.sweepMinIntervalMs,
        backoff: config.backoff,
      },
    },
    log,
    { resolvePath: (p) => (isAbsolute(p) ? p : resolve(root.baseDir, p)), env: process.env, onBodyTooLarge },
  );
}
