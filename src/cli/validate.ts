import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { parseConfig } from '../config/config.js';
import { formatDiagnostic } from '../errors.js';
import type { Diagnostic } from '../errors.js';
import { parseIstioText } from '../policy/istio/documents.js';
import { SERVICE_KIND_HANDLERS } from '../policy/istio/service-entry.js';

/** A daemon config, not Istio documents: one YAML document with a top-level `registries`. */
export function looksLikeDaemonConfig(text: string): boolean {
  return /^registries\s*:/m.test(text) && !/^kind\s*:/m.test(text);
}

/**
 * Checks files as the daemon would read them; returns every finding. Istio
 * files are read as the file registry reads them; a daemon config (given with
 * `--config`, or recognized by its top-level `registries`) as `run` reads it.
 */
export async function validateFiles(files: readonly string[], configs: readonly string[] = []): Promise<Diagnostic[]> {
  const findings: Diagnostic[] = [];
  for (const file of [...configs, ...files]) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      findings.push({ severity: 'error', source: file, message: `cannot read file: ${(error as Error).message}` });
      continue;
    }
    if (configs.includes(file) || looksLikeDaemonConfig(text)) {
      findings.push(...validateConfigText(file, text));
      continue;
    }
    const parsed = parseIstioText(file, text, SERVICE_KIND_HANDLERS);
    if (parsed.documents.length === 0 && parsed.diagnostics.length === 0) {
      findings.push({ severity: 'warning', source: file, message: 'file holds no documents' });
    }
    findings.push(...parsed.diagnostics);
  }
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
