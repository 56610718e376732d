import { createHash } from 'node:crypto';
import type { TlsPolicy } from '../../model/routing/types.js';

/**
 * gRPC clients do not read certificate files named in a cluster (grpc-go
 * NACKs one: "expected field ca_certificate_provider_instance is missing");
 * they take certificates from provider instances their bootstrap declares.
 * An instance is named after the files it reads, so the translator and
 * `meshbridge bootstrap --grpc --policy FILE` agree without talking: the same
 * files always give the same name, on every replica.
 */
function fileHash(...files: string[]): string {
  return createHash('sha256').update(files.join('\n')).digest('hex').slice(0, 12);
}

export function caInstanceName(caFile: string): string {
  return `meshbridge-ca-${fileHash(caFile)}`;
}

export function identityInstanceName(certificateFile: string, privateKeyFile: string): string {
  return `meshbridge-identity-${fileHash(certificateFile, privateKeyFile)}`;
}

/** A bootstrap `certificate_providers` entry: gRPC's file_watcher plugin. */
export interface FileWatcherInstance {
  readonly plugin_name: 'file_watcher';
  readonly config: {
    readonly ca_certificate_file?: string;
    readonly certificate_file?: string;
    readonly private_key_file?: string;
    readonly refresh_interval: string;
  };
}

/** The instances proxyless clients need for these TLS settings, by name; settings without TLS need none. */
export function certificateProviders(policies: readonly TlsPolicy[]): Map<string, FileWatcherInstance> {
  const instances = new Map<string, FileWatcherInstance>();
  for (const tls of policies) {
    if (tls.mode !== 'SIMPLE' && tls.mode !== 'MUTUAL') continue;
    if (tls.caCertificates !== undefined && !tls.insecureSkipVerify) {
      instances.set(caInstanceName(tls.caCertificates), {
        plugin_name: 'file_watcher',
        config: { ca_certificate_file: tls.caCertificates, refresh_interval: '600s' },
      });
    }
    if (tls.mode === 'MUTUAL' && tls.clientCertificate !== undefined && tls.privateKey !== undefined) {
      instances.set(identityInstanceName(tls.clientCertificate, tls.privateKey), {
        plugin_name: 'file_watcher',
        config: { certificate_file: tls.clientCertificate, private_key_file: tls.privateKey, refresh_interval: '600s' },
      });
    }
  }
  return new Map([...instances].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
