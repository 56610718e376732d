import { parseWorkloadIdentity } from '../model/service.js';
import type { WorkloadIdentity } from '../model/service.js';

/**
 * The Consul service meta key and Eureka metadata key that name an instance's
 * service account. Consul allows only letters, digits, `-` and `_` in meta
 * keys, so one name fits both registries.
 */
export const SERVICE_ACCOUNT_KEY = 'service-account';

export type RegistryIdentity =
  | { readonly identity: WorkloadIdentity; readonly problem?: undefined }
  | { readonly identity?: undefined; readonly problem: string };

/**
 * The identity of an instance registered under `serviceName`: that name,
 * lower-cased, as the service account unless the instance names its own.
 * A bad override gives no identity rather than the service's: an instance
 * that asked for another identity must not silently get a broader one.
 */
export function registryIdentity(namespace: string, serviceName: string, override: string | undefined): RegistryIdentity {
  if (override !== undefined) {
    const parsed = parseWorkloadIdentity(namespace, override);
    return 'error' in parsed ? { problem: `${SERVICE_ACCOUNT_KEY}: ${parsed.error}; the instance gets no identity` } : { identity: parsed };
  }
  const parsed = parseWorkloadIdentity(namespace, serviceName.toLowerCase());
  return 'error' in parsed
    ? { problem: `${parsed.error}; set ${SERVICE_ACCOUNT_KEY} to give the instance an identity` }
    : { identity: parsed };
}
