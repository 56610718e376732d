import { UsageError } from '../errors.js';
import { formatDiagnostic } from '../errors.js';
import { hasErrors, parseIstioText } from '../istio/documents.js';
import type { ParsedFile } from '../istio/documents.js';
import { DEFAULT_FILE_BYTES, readBounded } from '../istio/file-store.js';
import { ISTIO_KIND_HANDLERS } from '../istio/kinds.js';
import { policyFromFiles } from '../istio/policy-set.js';
import type { TlsPolicy } from '../model/routing/types.js';
import { certificateProviders } from '../xds/translate/certificate-providers.js';
import type { FileWatcherInstance } from '../xds/translate/certificate-providers.js';

/**
 * The certificate provider instances a gRPC client needs for the
 * DestinationRules in `files` (the ones the daemon's policy.paths name): one
 * per CA file and per client certificate and key, named as the translator names them.
 * A file that does not read or validate is an error: a bootstrap missing an
 * instance would make the client reject the cluster.
 */
export async function certificateProvidersFromPolicy(files: readonly string[]): Promise<Map<string, FileWatcherInstance>> {
  const parsed = new Map<string, ParsedFile>();
  for (const file of files) {
    const text = await readBounded(file, DEFAULT_FILE_BYTES);
    if (typeof text !== 'string') throw new UsageError(`--policy ${file}: ${text.problem}`);
    const result = parseIstioText(file, text, ISTIO_KIND_HANDLERS);
    if (hasErrors(result.diagnostics)) {
      throw new UsageError(`--policy ${file} is invalid:\n${result.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic).join('\n')}`);
    }
    parsed.set(file, result);
  }
  const tls: TlsPolicy[] = [];
  for (const rule of policyFromFiles(parsed).destinationRules) {
    const policies = [rule.spec.trafficPolicy, ...(rule.spec.subsets ?? []).map((s) => s.trafficPolicy)];
    for (const policy of policies) {
      if (policy === undefined) continue;
      if (policy.tls !== undefined) tls.push(policy.tls as TlsPolicy);
      for (const port of policy.portLevelSettings ?? []) if (port.tls !== undefined) tls.push(port.tls as TlsPolicy);
    }
  }
  return certificateProviders(tls);
}
