import { readFile } from 'node:fs/promises';
import { formatDiagnostic } from '../errors.js';
import type { Diagnostic } from '../errors.js';
import { parseIstioText } from '../policy/istio/documents.js';
import { SERVICE_KIND_HANDLERS } from '../policy/istio/service-entry.js';

/** Checks Istio files as the daemon would read them; returns every finding. */
export async function validateFiles(files: readonly string[]): Promise<Diagnostic[]> {
  const findings: Diagnostic[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      findings.push({ severity: 'error', source: file, message: `cannot read file: ${(error as Error).message}` });
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

export function printFindings(findings: readonly Diagnostic[], out: NodeJS.WritableStream): void {
  for (const finding of findings) out.write(`${formatDiagnostic(finding)}\n`);
}
