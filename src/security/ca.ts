// @peculiar/x509 resolves its parts through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import { X509Certificate as NodeX509, createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';
import { MeshbridgeError } from '../errors.js';

/**
 * A small certificate authority for the control plane's own TLS: the CA,
 * meshbridge's server certificate and the proxies' and operators' client
 * certificates. ECDSA P-256 keys; certificates are built with @peculiar/x509.
 */

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
// Passed to every call rather than set as the library's global provider.
const crypto = webcrypto as unknown as NonNullable<Parameters<typeof x509.X509CertificateGenerator.create>[1]>;
const EC_KEY = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const EC_SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;
const RSA_SIGNING = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;

export class CaError extends MeshbridgeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MB_CA_FAILED', message, options);
  }
}

export interface PemPair {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface CreateCaOptions {
  readonly trustDomain: string;
  readonly commonName?: string;
  readonly days?: number;
  readonly now?: Date;
}

export interface IssueOptions {
  readonly ca: PemPair;
  /** server: serverAuth, for meshbridge's xDS or admin port; client: clientAuth, for proxies and operators. */
  readonly usage: 'server' | 'client';
  readonly commonName: string;
  /** A spiffe:// URI SAN (client certificates). */
  readonly spiffeId?: string;
  /** DNS names and IP addresses (server certificates). */
  readonly hosts?: readonly string[];
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

export function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f; // a positive INTEGER
  return bytes.toString('hex');
}

function escapeDn(value: string): string {
  return value.replace(/([,+"\\<>;=])/g, '\\$1');
}

async function keyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await crypto.subtle.exportKey('pkcs8', key));
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** A CA key from PEM (PKCS#8 or SEC1 EC, or RSA: an existing PKI's files work). */
export async function importSigningKey(pem: string): Promise<{ key: CryptoKey; algorithm: typeof EC_SIGNING | typeof RSA_SIGNING }> {
  let object;
  try {
    object = createPrivateKey(pem);
  } catch (error) {
    throw new CaError(`the CA key is not a PEM private key: ${(error as Error).message}`, { cause: error });
  }
  const der = object.export({ type: 'pkcs8', format: 'der' });
  if (object.asymmetricKeyType === 'ec') {
    const curve = object.asymmetricKeyDetails?.namedCurve;
    const namedCurve = curve === 'prime256v1' ? 'P-256' : curve === 'secp384r1' ? 'P-384' : undefined;
    if (namedCurve === undefined) throw new CaError(`the CA key's curve ${curve} is not P-256 or P-384`);
    const key = await crypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve }, false, ['sign']);
    return { key, algorithm: EC_SIGNING };
  }
  if (object.asymmetricKeyType === 'rsa') {
    const key = await crypto.subtle.importKey('pkcs8', der, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, ['sign']);
    return { key, algorithm: RSA_SIGNING };
  }
  throw new CaError(`the CA key is ${object.asymmetricKeyType}; an EC or RSA key is needed`);
}

export async function createCa(options: CreateCaOptions): Promise<PemPair> {
  const now = options.now ?? new Date();
  const keys = (await crypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify'])) as CryptoKeyPair;
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serialNumber(),
      name: `CN=${escapeDn(options.commonName ?? `meshbridge CA ${options.trustDomain}`)}`,
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + (options.days ?? 3650) * DAY_MS),
      signingAlgorithm: EC_SIGNING,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${options.trustDomain}` }]),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  return { certPem: certificate.toString('pem'), keyPem: await keyPem(keys.privateKey) };
}

/** The trust domain a CA made by createCa names in its URI SAN, if any. */
export function caTrustDomain(caCertPem: string): string | undefined {
  const san = new NodeX509(caCertPem).subjectAltName ?? '';
  return /URI:spiffe:\/\/([^/,\s]+)/.exec(san)?.[1];
}

export async function issueCertificate(options: IssueOptions): Promise<PemPair> {
  let caCert: x509.X509Certificate;
  try {
    caCert = new x509.X509Certificate(options.ca.certPem);
  } catch (error) {
    throw new CaError(`the CA certificate is not a PEM certificate: ${(error as Error).message}`, { cause: error });
  }
  const nodeCa = new NodeX509(options.ca.certPem);
  if (!nodeCa.ca) throw new CaError('the CA certificate is not a CA (basicConstraints CA:FALSE)');
  const signing = await importSigningKey(options.ca.keyPem);
  if (!nodeCa.checkPrivateKey(createPrivateKey(options.ca.keyPem))) throw new CaError('the CA key does not belong to the CA certificate');
  const keys = (await crypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify'])) as CryptoKeyPair;
  const now = new Date();
  const names: x509.JsonGeneralName[] = [];
  if (options.spiffeId !== undefined) names.push({ type: 'url', value: options.spiffeId });
  for (const host of options.hosts ?? []) names.push({ type: isIP(host) === 0 ? 'dns' : 'ip', value: host });
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
    new x509.ExtendedKeyUsageExtension([options.usage === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth], false),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
    await x509.AuthorityKeyIdentifierExtension.create(caCert, false, crypto),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  const certificate = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serialNumber(),
      subject: `CN=${escapeDn(options.commonName)}`,
      issuer: caCert.subject,
      notBefore: options.notBefore ?? new Date(now.getTime() - 60_000),
      notAfter: options.notAfter ?? new Date(now.getTime() + 365 * DAY_MS),
      signingAlgorithm: signing.algorithm,
      publicKey: keys.publicKey,
      signingKey: signing.key,
      extensions,
    },
    crypto,
  );
  return { certPem: certificate.toString('pem'), keyPem: await keyPem(keys.privateKey) };
}
