import type { RegistryConfig } from '../../config/config.js';
import type { RegistryContext } from '../from-config.js';
import { EurekaRegistry } from './eureka-registry.js';

type EurekaConfig = Extract<RegistryConfig, { kind: 'eureka' }>;

export function eurekaFromConfig(config: EurekaConfig, { root, log, onBodyTooLarge }: RegistryContext): EurekaRegistry {
  return new EurekaRegistry(
    {
      name: config.name,
      serviceUrls: config.serviceUrls,
      domain: config.domain,
      region: config.region,
      defaultProtocol: config.defaultProtocol,
      servicePort: config.servicePort,
      namespace: config.namespace,
      refreshIntervalMs: config.refreshIntervalMs,
      requestTimeoutMs: config.requestTimeoutMs,
      initialSyncTimeoutMs: config.initialSyncTimeoutMs,
      deltaRetentionMs: config.deltaRetentionMs,
      backoff: config.backoff,
      dropGuard: { maxDropFraction: config.maxDropFraction, minInstances: config.dropGuardMinInstances, holdMs: config.dropGuardHoldMs },
      maxBodyBytes: root.limits.registryResponseBytes,
    },
    log,
    { onBodyTooLarge },
  );
}
