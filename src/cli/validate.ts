import { parseDocument } from 'yaml';
import { parseConfig } from '../config/config.js';
import { formatDiagnostic } from '../errors.js';
import type { Diagnostic } from '../errors.js';
import { mergeCatalog } from '../model/merge.js';
import { hasErrors, parseIstioText } from '../istio/documents.js';
import type { ParsedFile } from '../istio/documents.js';
import { DEFAULT_FILE_BYTES, readBounded } from '../istio/file-store.js';
import { ISTIO_KIND_HANDLERS } from '../istio/kinds.js';
import { policyFromFiles } from '../istio/policy-set.js';
import { buildRoutingModel } from '../model/routing/build.js';
import { servicesFromFiles } from '../registries/file/service-entries.js';

/** A daemon config, not Istio documents: one YAML document with a top-level `registries`. */
export function looksLikeDaemonConfig(text: string): boolean {
  return /^registries\s*:/m.test(text) && !/^kind\s*:/m.test(text);
}

/**
 * Checks Istio files as the daemon would read them, every kind, and then
 * together: subsets routes name, hosts rules name (against the services the
 * same files declare). A daemon config (given with `--config`, or recognized
 * by its top-level `registries`) is checked as `run` reads it. Returns every finding.
 */
export async function validateFiles(files: readonly string[], configs: readonly string[] = []): Promise<Diagnostic[]> {
  const findings: Diagnostic[] = [];
  const accepted = new Map<string, ParsedFile>();
  for (const file of [...configs, ...files]) {
    const text = await readBounded(file, DEFAULT_FILE_BYTES);
    if (typeof text !== 'string') {
      findings.push({ severity: 'error', source: file, message: text.problem });
      continue;
    }
    if (configs.includes(file) || looksLikeDaemonConfig(text)) {
      findings.push(...validateConfigText(file, text));
      continue;
    }
    const parsed = parseIstioText(file, text, ISTIO_KIND_HANDLERS);
    if (parsed.documents.length === 0 && parsed.diagnostics.length === 0) {
      findings.push({ severity: 'warning', source: file, message: 'file holds no documents' });
    }
    findings.push(...parsed.diagnostics);
    if (!hasErrors(parsed.diagnostics)) accepted.set(file, parsed);
  }
  const { services, diagnostics } = servicesFromFiles(accepted, 'files');
  const policy = policyFromFiles(accepted);
  const resolved = buildRoutingModel(mergeCatalog([{ registry: 'files', kind: 'file', services, synced: true, stale: false, diagnostics: [] }]), policy);
  findings.push(...diagnostics, ...policy.diagnostics, ...resolved.diagnostics);
  return findings;
}

/** The findings `meshbridge run --config FILE` would stop on (errors) or log (warnings). */
export function validateConfigText(file: string, text: string): Diagnostic[] {
  const document = parseDocument(text, { prettyErrors: false });
  if (document.errors.length > 0) {
    return document.errors.map((e) => ({
      severity: 'error',
      source: file,
      message: `YAML syntax: ${e.message.split('\n')[0]}${e.linePos?.[0] ? ` (line ${e.linePos[0].line})` : ''}`,
    }));
  }
  return parseConfig(document.toJS(), file).diagnostics;
}

export function printFindings(findings: readonly Diagnostic[], out: NodeJS.WritableStream): void {
  for (const finding of findings) out.write(`${formatDiagnostic(finding)}\n`);
}
