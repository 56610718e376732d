import { createPrivateKey, createPublicKey, randomUUID } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SignJWT, exportPKCS8, generateKeyPair, importPKCS8, importSPKI, jwtVerify } from 'jose';
import type { CryptoKey } from 'jose';
import { durationSeconds } from '../duration.js';
import { TokenError } from '../errors.js';

/** Files in the state directory; the key never leaves it. */
export const TOKEN_KEY_FILE = 'token-signing-key.pem';
export const REVOKED_TOKENS_FILE = 'revoked-tokens.json';

const ISSUER = 'meshbridge';
const AUDIENCE = 'meshbridge';
const ALGORITHM = 'EdDSA';
/** A token is a few hundred bytes; anything far larger is not one of ours. */
export const MAX_TOKEN_BYTES = 4096;
/** Revocations kept (expired ones are pruned on each write). */
const MAX_REVOCATIONS = 100_000;
const MAX_REVOCATION_FILE_BYTES = 16 * 1024 * 1024;

export type TokenRole = 'node' | 'operator';

export interface TokenClaims {
  /** The node id the proxy must present, or the operator's name. */
  readonly subject: string;
  readonly role: TokenRole;
  readonly id: string;
  readonly expiresAt: Date;
}

interface Revocation {
  readonly id: string;
  /** Seconds since the epoch; past it the token is dead anyway and the entry can go. */
  readonly exp: number;
}

/** "90s", "30m", "24h", "7d" (or plain seconds) into seconds. */
export function parseTtl(value: string): number {
  const seconds = durationSeconds(value, ['s', 'm', 'h', 'd'], true);
  if (Number.isNaN(seconds)) throw new TokenError(`--ttl must be a duration such as 90s, 30m, 24h or 7d, got "${value}"`);
  if (seconds < 1 || seconds > 366 * 86_400) throw new TokenError(`--ttl must be between 1s and 366d, got "${value}"`);
  return seconds;
}

/**
 * Issues, verifies and revokes the tokens proxies present in gRPC metadata
 * (`authorization: Bearer <jwt>`). One Ed25519 key in the state directory
 * signs them; revocations are a file beside it that the daemon re-reads, so
 * `meshbridge token revoke` works without talking to a running daemon.
 */
export class TokenAuthority {
  private revoked = new Set<string>();
  private revokedStamp = '';

  private constructor(
    readonly stateDir: string,
    private readonly publicKey: CryptoKey,
    private readonly privateKey: CryptoKey | undefined,
  ) {}

  /** Opens the key in `stateDir`, creating it (0600) on first use. */
  static async open(stateDir: string): Promise<TokenAuthority> {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    const file = join(stateDir, TOKEN_KEY_FILE);
    let pem: string;
    try {
      pem = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new TokenError(`cannot read the token signing key ${file}: ${(error as Error).message}`, { cause: error });
      const { privateKey } = await generateKeyPair(ALGORITHM, { extractable: true, crv: 'Ed25519' });
      pem = await exportPKCS8(privateKey);
      try {
        // 'wx': two processes creating the key at once must not each keep their own.
        await writeFile(file, pem, { mode: 0o600, flag: 'wx' });
      } catch (writeError) {
        if ((writeError as NodeJS.ErrnoException).code !== 'EEXIST') throw new TokenError(`cannot write the token signing key ${file}: ${(writeError as Error).message}`, { cause: writeError });
        pem = await readFile(file, 'utf8');
      }
    }
    const mode = (await stat(file)).mode & 0o077;
    if (mode !== 0) await chmod(file, 0o600);
    let privateKey: CryptoKey;
    try {
      privateKey = await importPKCS8(pem, ALGORITHM, { extractable: true });
    } catch (error) {
      throw new TokenError(`the token signing key ${file} is not an Ed25519 PKCS#8 PEM key: ${(error as Error).message}`, { cause: error });
    }
    const publicKey = await importSPKI(createPublicKey(createPrivateKey(pem)).export({ type: 'spki', format: 'pem' }).toString(), ALGORITHM);
    const authority = new TokenAuthority(stateDir, publicKey, privateKey);
    await authority.refreshRevocations();
    return authority;
  }

  async create(subject: string, role: TokenRole, ttlSeconds: number, now = Date.now()): Promise<{ token: string; claims: TokenClaims }> {
    if (this.privateKey === undefined) throw new TokenError('this token authority can only verify');
    if (!/^[\w.:@-]{1,256}$/.test(subject)) throw new TokenError(`"${subject}" is not a node id or operator name (letters, digits, . _ : @ -)`);
    const id = randomUUID();
    const issuedAt = Math.floor(now / 1000);
    const token = await new SignJWT({ role })
      .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject(subject)
      .setJti(id)
      .setIssuedAt(issuedAt)
      .setExpirationTime(issuedAt + ttlSeconds)
      .sign(this.privateKey);
    return { token, claims: { subject, role, id, expiresAt: new Date((issuedAt + ttlSeconds) * 1000) } };
  }

  /** The token's claims, or a TokenError saying why it is refused. */
  async verify(token: string, now = Date.now()): Promise<TokenClaims> {
    if (token.length > MAX_TOKEN_BYTES) throw new TokenError(`token longer than ${MAX_TOKEN_BYTES} bytes`);
    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.publicKey, {
        issuer: ISSUER,
        audience: AUDIENCE,
        algorithms: [ALGORITHM],
        requiredClaims: ['sub', 'jti', 'exp'],
        currentDate: new Date(now),
      }));
    } catch (error) {
      const code = (error as { code?: string }).code;
      const reason = code === 'ERR_JWT_EXPIRED' ? 'token expired' : code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' ? 'token not signed by this meshbridge' : `token invalid: ${(error as Error).message}`;
      throw new TokenError(reason, { cause: error });
    }
    const role = payload['role'];
    if (role !== 'node' && role !== 'operator') throw new TokenError('token has no role');
    if (this.revoked.has(payload.jti!)) throw new TokenError(`token ${payload.jti} revoked`);
    return { subject: payload.sub!, role, id: payload.jti!, expiresAt: new Date(payload.exp! * 1000) };
  }

  isRevoked(id: string): boolean {
    return this.revoked.has(id);
  }

  /** Reads the revocation file again if it changed; true when it did. */
  async refreshRevocations(): Promise<boolean> {
    const file = join(this.stateDir, REVOKED_TOKENS_FILE);
    let stamp: string;
    try {
      const info = await stat(file);
      if (info.size > MAX_REVOCATION_FILE_BYTES) throw new TokenError(`${file} is larger than ${MAX_REVOCATION_FILE_BYTES} bytes`);
      stamp = `${info.mtimeMs}:${info.size}:${info.ino}`;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        const changed = this.revokedStamp !== '';
        this.revoked = new Set();
        this.revokedStamp = '';
        return changed;
      }
      throw error;
    }
    if (stamp === this.revokedStamp) return false;
    this.revoked = new Set((await readRevocations(file)).map((r) => r.id));
    this.revokedStamp = stamp;
    return true;
  }

  /** Adds a revocation (the token's expiry bounds how long it is kept). */
  async revoke(id: string, expiresAt: Date | undefined, now = Date.now()): Promise<void> {
    const file = join(this.stateDir, REVOKED_TOKENS_FILE);
    const kept = (await readRevocations(file).catch(() => [] as Revocation[])).filter((r) => r.exp * 1000 > now && r.id !== id);
    // Without the token itself its expiry is unknown: keep the entry as long as any token may live.
    const exp = Math.floor((expiresAt?.getTime() ?? now + 366 * 86_400_000) / 1000);
    kept.push({ id, exp });
    if (kept.length > MAX_REVOCATIONS) throw new TokenError(`more than ${MAX_REVOCATIONS} live revocations; rotate the signing key instead`);
    const temp = `${file}.${process.pid}.tmp`;
    const handle = await open(temp, 'w', 0o600);
    try {
      await handle.writeFile(`${JSON.stringify({ revoked: kept }, null, 1)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
    await this.refreshRevocations();
  }

  /** The claims of a token without checking expiry or revocation: `token revoke` takes a token file too. */
  async inspect(token: string): Promise<TokenClaims> {
    return this.verify(token, 0).catch(async (error: unknown) => {
      if (error instanceof TokenError && /revoked/.test(error.message)) {
        const [, body] = token.split('.');
        const payload = JSON.parse(Buffer.from(body ?? '', 'base64url').toString('utf8')) as { sub: string; role: TokenRole; jti: string; exp: number };
        return { subject: payload.sub, role: payload.role, id: payload.jti, expiresAt: new Date(payload.exp * 1000) };
      }
      throw error;
    });
  }
}

async function readRevocations(file: string): Promise<Revocation[]> {
  const text = await readFile(file, 'utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new TokenError(`${file}: not JSON: ${(error as Error).message}`, { cause: error });
  }
  const list = (parsed as { revoked?: unknown }).revoked;
  if (!Array.isArray(list)) throw new TokenError(`${file}: revoked must be a list`);
  return list.filter((r): r is Revocation => typeof r === 'object' && r !== null && typeof r.id === 'string' && typeof r.exp === 'number').slice(0, MAX_REVOCATIONS);
}
