import { formatDiagnostic } from '../../src/errors.js';
import { hasErrors, parseIstioText } from '../../src/istio/documents.js';
import type { ParsedFile } from '../../src/istio/documents.js';
import { ISTIO_KIND_HANDLERS } from '../../src/istio/kinds.js';

/** Istio YAML files by name, parsed as the file store reads them; a file with an error fails the test that wrote it. */
export function parseFiles(files: Record<string, string>): Map<string, ParsedFile> {
  return new Map(
    Object.entries(files).map(([name, text]) => {
      const parsed = parseIstioText(name, text, ISTIO_KIND_HANDLERS);
      if (hasErrors(parsed.diagnostics)) throw new Error(`${name}: ${parsed.diagnostics.map(formatDiagnostic).join('\n')}`);
      return [name, parsed];
    }),
  );
}
