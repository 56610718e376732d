/**
 * Every error meshbridge raises on purpose. Codes are stable: logs, metrics and
 * tests match on them, never on message text.
 */
export type ErrorCode =
  | 'MB_CONFIG_INVALID'
  | 'MB_CONFIG_UNREADABLE'
  | 'MB_CONSUL_ACL_DENIED'
  | 'MB_CONSUL_NO_LEADER'
  | 'MB_CONSUL_RATE_LIMITED'
  | 'MB_CONSUL_REQUEST_FAILED'
  | 'MB_CONSUL_RESPONSE_INVALID'
  | 'MB_CONSUL_SERVER_ERROR'
  | 'MB_DOCUMENT_INVALID'
  | 'MB_EUREKA_FORBIDDEN'
  | 'MB_EUREKA_REQUEST_FAILED'
  | 'MB_EUREKA_RESPONSE_INVALID'
  | 'MB_EUREKA_SERVER_ERROR'
  | 'MB_FILE_UNREADABLE'
  | 'MB_PROTO_LOAD'
  | 'MB_REGEX_INVALID'
  | 'MB_REGISTRY_RESPONSE_TOO_LARGE'
  | 'MB_RESOURCE_ENCODE'
  | 'MB_SNAPSHOT_INVALID'
  | 'MB_REGISTRY_UNAVAILABLE'
  | 'MB_SAVED_STATE_INVALID'
  | 'MB_SAVED_STATE_UNWRITABLE'
  | 'MB_USAGE'
  | 'MB_ADMIN_UNREACHABLE'
  | 'MB_TLS_FILES_INVALID'
  | 'MB_PLAINTEXT_REFUSED'
  | 'MB_TOKEN_INVALID'
  | 'MB_CA_FAILED'
  | 'MB_CSR_REJECTED'
  | 'MB_AGENT_FAILED';

export class MeshbridgeError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A finding about one field of one document: the unit of every validation report. */
export interface Diagnostic {
  readonly severity: 'error' | 'warning';
  /** File path, or another origin such as `consul:dc1`. */
  readonly source: string;
  /** Zero-based index of the YAML document in the file, when the source is a file. */
  readonly document?: number;
  /** Dotted field path inside the document, e.g. `spec.endpoints[2].address`. */
  readonly field?: string;
  readonly message: string;
}

export function formatDiagnostic(d: Diagnostic): string {
  const where = [d.source, d.document === undefined ? undefined : `document ${d.document}`, d.field]
    .filter((part) => part !== undefined && part !== '')
    .join(': ');
  return `${d.severity}: ${where}: ${d.message}`;
}

export class DocumentError extends MeshbridgeError {
  readonly diagnostics: readonly Diagnostic[];

  constructor(diagnostics: readonly Diagnostic[]) {
    super('MB_DOCUMENT_INVALID', diagnostics.map(formatDiagnostic).join('\n'));
    this.diagnostics = diagnostics;
  }
}

export class ConfigError extends MeshbridgeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MB_CONFIG_INVALID', message, options);
  }
}

/** A request to a registry's server that failed; `status` is the HTTP status when there was an answer at all. */
export class RegistryRequestError extends MeshbridgeError {
  readonly status: number | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; status?: number }) {
    super(code, message, options);
    this.status = options?.status;
  }
}

/** A Consul request that failed. */
export class ConsulError extends RegistryRequestError {}

/** A Eureka request that failed on every service URL; `status` is the last one's. */
export class EurekaError extends RegistryRequestError {}

export class UsageError extends MeshbridgeError {
  constructor(message: string) {
    super('MB_USAGE', message);
  }
}

/** Certificate, key or CA files that cannot be read or do not belong together. */
export class TlsFilesError extends MeshbridgeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MB_TLS_FILES_INVALID', message, options);
  }
}

/** A token that is malformed, badly signed, expired, revoked or for another audience. */
export class TokenError extends MeshbridgeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MB_TOKEN_INVALID', message, options);
  }
}
