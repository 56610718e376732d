import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, resolveStateDir } from '../config/config.js';
import { UsageError } from '../errors.js';
import { DEFAULT_TRUST_DOMAIN } from '../model/service.js';
import { CaError, caTrustDomain, createCa, issueCertificate } from '../security/ca.js';
import { spiffeId } from '../security/identity.js';
import { rotateWorkloadRoot } from '../security/workload-ca.js';
import { MAX_TOKEN_BYTES, TokenAuthority, parseTtl } from '../security/tokens.js';


async function writeNew(file: string, content: string, mode: number): Promise<void> {
  try {
    await writeFile(file, content, { mode, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new CaError(`${file} exists; remove it first (meshbridge never overwrites a key)`);
    throw new CaError(`cannot write ${file}: ${(error as Error).message}`, { cause: error });
  }
}

function days(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 36_500) throw new UsageError(`--days must be a whole number from 1 to 36500, got "${value}"`);
  return n;
}

export async function ca(args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  if (verb === 'rotate-workload-root') return rotateRoot(rest);
  const { values } = parseArgs({
    args: rest,
    options: {
      dir: { type: 'string' },
      'trust-domain': { type: 'string' },
      days: { type: 'string' },
      server: { type: 'string' },
      node: { type: 'string' },
      operator: { type: 'string' },
      out: { type: 'string' },
    },
    strict: true,
  });
  if (!values.dir) throw new UsageError(`ca ${verb ?? ''} needs --dir`);
  const caCert = join(values.dir, 'ca.crt');
  const caKey = join(values.dir, 'ca.key');
  if (verb === 'create') {
    const trustDomain = values['trust-domain'] ?? DEFAULT_TRUST_DOMAIN;
    const pair = await createCa({ trustDomain, days: days(values.days, 3650) });
    await writeNew(caKey, pair.keyPem, 0o600);
    await writeNew(caCert, pair.certPem, 0o644);
    process.stdout.write(`${caCert}\n${caKey}\n`);
    return 0;
  }
  if (verb === 'issue') {
    const kinds = [values.server, values.node, values.operator].filter((v) => v !== undefined);
    if (kinds.length !== 1) throw new UsageError('ca issue needs exactly one of --server, --node or --operator');
    if (!values.out) throw new UsageError('ca issue needs --out PREFIX');
    const pem = { certPem: await readFile(caCert, 'utf8'), keyPem: await readFile(caKey, 'utf8') };
    const trustDomain = values['trust-domain'] ?? caTrustDomain(pem.certPem) ?? DEFAULT_TRUST_DOMAIN;
    const notAfter = new Date(Date.now() + days(values.days, 365) * 86_400_000);
    const pair =
      values.server !== undefined
        ? await issueCertificate({ ca: pem, usage: 'server', commonName: values.server.split(',')[0]!, hosts: values.server.split(',').filter(Boolean), notAfter })
        : values.node !== undefined
          ? await issueCertificate({ ca: pem, usage: 'client', commonName: values.node, spiffeId: spiffeId(trustDomain, 'node', values.node), notAfter })
          : await issueCertificate({ ca: pem, usage: 'client', commonName: values.operator!, spiffeId: spiffeId(trustDomain, 'operator', values.operator!), notAfter });
    await writeNew(`${values.out}.key`, pair.keyPem, 0o600);
    await writeNew(`${values.out}.crt`, pair.certPem, 0o644);
    process.stdout.write(`${values.out}.crt\n${values.out}.key\n`);
    return 0;
  }
  throw new UsageError('ca takes create, issue or rotate-workload-root');
}

/** `ca rotate-workload-root`: schedules a new workload root; the daemon picks the schedule up without a restart. */
async function rotateRoot(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string' },
      'state-dir': { type: 'string' },
      'trust-domain': { type: 'string' },
      'activate-after': { type: 'string', default: '24h' },
      overlap: { type: 'string', default: '48h' },
    },
    strict: true,
  });
  const trustDomain =
    values['trust-domain'] ?? (values.config !== undefined ? (await loadConfig(values.config)).config.security.trustDomain : DEFAULT_TRUST_DOMAIN);
  const result = await rotateWorkloadRoot(await stateDirOf(values), {
    trustDomain,
    activateAfterMs: parseTtl(values['activate-after']) * 1000,
    overlapMs: parseTtl(values.overlap) * 1000,
  });
  process.stdout.write(
    `${result.id} is trusted now and signs from ${result.activeFrom.toISOString()}; the previous root is trusted until ${result.oldTrustedUntil.toISOString()}\n`,
  );
  return 0;
}

async function stateDirOf(values: { config?: string; 'state-dir'?: string }): Promise<string> {
  if (values['state-dir'] !== undefined) return values['state-dir'];
  if (values.config !== undefined) return resolveStateDir((await loadConfig(values.config)).config);
  return resolveStateDir({ stateDir: undefined, baseDir: process.cwd() });
}

export async function token(args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: {
      node: { type: 'string' },
      operator: { type: 'string' },
      ttl: { type: 'string', default: '24h' },
      out: { type: 'string' },
      id: { type: 'string' },
      'token-file': { type: 'string' },
      config: { type: 'string' },
      'state-dir': { type: 'string' },
    },
    strict: true,
  });
  const authority = await TokenAuthority.open(await stateDirOf(values));
  if (verb === 'create') {
    if ((values.node === undefined) === (values.operator === undefined)) throw new UsageError('token create needs exactly one of --node or --operator');
    const role = values.node !== undefined ? 'node' : 'operator';
    const { token: jwt, claims } = await authority.create((values.node ?? values.operator)!, role, parseTtl(values.ttl));
    if (values.out !== undefined) await writeFile(values.out, `${jwt}\n`, { mode: 0o600 });
    else process.stdout.write(`${jwt}\n`);
    process.stderr.write(`token ${claims.id} for ${role} ${claims.subject}, expires ${claims.expiresAt.toISOString()}\n`);
    return 0;
  }
  if (verb === 'revoke') {
    if ((values.id === undefined) === (values['token-file'] === undefined)) throw new UsageError('token revoke needs exactly one of --id or --token-file');
    let id = values.id!;
    let expiresAt: Date | undefined;
    if (values['token-file'] !== undefined) {
      const text = (await readFile(values['token-file'], 'utf8')).trim();
      if (text.length > MAX_TOKEN_BYTES) throw new UsageError(`${values['token-file']} is not a token`);
      const claims = await authority.inspect(text);
      id = claims.id;
      expiresAt = claims.expiresAt;
    }
    await authority.revoke(id, expiresAt);
    process.stderr.write(`token ${id} revoked\n`);
    return 0;
  }
  throw new UsageError('token takes create or revoke');
}
