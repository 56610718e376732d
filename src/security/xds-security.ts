import { access, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { Counter } from 'prom-client';
import type { Registry } from 'prom-client';
import type { Config } from '../config/config.js';
import { resolveStateDir } from '../config/config.js';
import { MeshbridgeError } from '../errors.js';
import { ReloadingTlsFiles, isLoopbackHost, reloadingServerCredentials } from './tls-files.js';
import { TOKEN_KEY_FILE, TokenAuthority } from './tokens.js';
import { WORKLOAD_CA_DIR, WorkloadCa } from './workload-ca.js';
import { XdsGuard } from './xds-guard.js';

type SecurityConfig = Pick<Config, 'xds' | 'admin' | 'security' | 'stateDir' | 'baseDir'>;

export function listenHost(listen: string): string {
  return listen.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
}

/** Identity is required by default once the port speaks TLS. */
export function identityRequired(config: SecurityConfig): boolean {
  return config.security.requireIdentity ?? config.xds.tls !== undefined;
}

/** The admin pages beyond /healthz, /readyz and /metrics need an operator token once xDS needs identities or the port is reachable from elsewhere. */
export function adminRequiresToken(config: SecurityConfig): boolean {
  return config.admin.requireToken || identityRequired(config) || !isLoopbackHost(listenHost(config.admin.listen));
}

/**
 * Everything that decides who may talk to the xDS port, built from the
 * config: TLS files (reloaded), the token authority in the state directory,
 * and the guard that checks each stream.
 */
export class XdsSecurity {
  readonly guard: XdsGuard;
  private tlsFiles: ReloadingTlsFiles | undefined;
  private adminTlsFiles: ReloadingTlsFiles | undefined;
  private tokenAuthority: TokenAuthority | undefined;
  private workloadCaValue: WorkloadCa | undefined;
  private workloadCaTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly config: SecurityConfig,
    private readonly log: Logger,
    metrics?: Registry,
  ) {
    const refused =
      metrics === undefined
        ? undefined
        : new Counter({
            name: 'meshbridge_xds_streams_refused_total',
            help: 'xDS and CSDS calls refused or ended by authentication and authorization, by gRPC status.',
            labelNames: ['code'],
            registers: [metrics],
          });
    this.guard = new XdsGuard(
      {
        trustDomain: config.security.trustDomain,
        requireIdentity: identityRequired(config),
        revocationCheckIntervalMs: config.security.revocationCheckIntervalMs,
        ...(refused === undefined ? {} : { onRefused: (code: string) => refused.inc({ code }) }),
      },
      log,
    );
  }

  get tokens(): TokenAuthority | undefined {
    return this.tokenAuthority;
  }

  /** Set once started, when `security.workloadCa` is configured. */
  get workloadCa(): WorkloadCa | undefined {
    return this.workloadCaValue;
  }

  get tls(): ReloadingTlsFiles | undefined {
    return this.tlsFiles;
  }

  get adminTls(): ReloadingTlsFiles | undefined {
    return this.adminTlsFiles;
  }

  interceptors(): grpc.ServerInterceptor[] {
    return [this.guard.interceptor()];
  }

  /**
   * Checks the plaintext rule, loads the TLS files and the token key; returns
   * the server credentials (undefined: plaintext). Throws if the files are bad.
   */
  async start(): Promise<grpc.ServerCredentials | undefined> {
    const { xds } = this.config;
    const host = listenHost(xds.listen);
    if (xds.tls === undefined && !isLoopbackHost(host)) {
      if (!xds.allowPlaintext) {
        throw new MeshbridgeError(
          'MB_PLAINTEXT_REFUSED',
          `xds.listen ${xds.listen} is reachable beyond this machine, and without TLS anyone who reaches it gets the whole mesh: set xds.tls (see "Securing meshbridge" in the README), or xds.allowPlaintext: true to accept that`,
        );
      }
      this.log.warn(
        { listen: xds.listen, allowPlaintext: true },
        `SECURITY: xDS is served in PLAINTEXT on ${xds.listen}, beyond loopback (xds.allowPlaintext: true); anyone who can reach it can read the mesh config`,
      );
    }
    const stateDir = resolveStateDir(this.config);
    const keyExists = await access(join(stateDir, TOKEN_KEY_FILE)).then(
      () => true,
      () => false,
    );
    if (keyExists || identityRequired(this.config) || adminRequiresToken(this.config)) {
      this.tokenAuthority = await TokenAuthority.open(stateDir);
      this.guard.useTokens(this.tokenAuthority);
    }
    this.guard.start();
    const path = (p: string) => (isAbsolute(p) ? p : resolve(this.config.baseDir, p));
    const workloadCa = this.config.security.workloadCa;
    if (workloadCa !== undefined) {
      this.workloadCaValue =
        workloadCa.certFile !== undefined && workloadCa.keyFile !== undefined && workloadCa.rootsFile !== undefined
          ? await WorkloadCa.fromFiles({ certFile: path(workloadCa.certFile), keyFile: path(workloadCa.keyFile), rootsFile: path(workloadCa.rootsFile) })
          : await WorkloadCa.open(stateDir, this.config.security.trustDomain);
      this.log.info({ trustDomain: this.config.security.trustDomain, signer: this.workloadCaValue.signer().subject }, 'workload CA ready');
      if (workloadCa.certFile === undefined) this.watchRootSchedule(stateDir, workloadCa.reloadIntervalMs);
    }
    const { admin } = this.config;
    if (admin.tls !== undefined) {
      this.adminTlsFiles = new ReloadingTlsFiles({ certFile: path(admin.tls.certFile), keyFile: path(admin.tls.keyFile) }, admin.tls.reloadIntervalMs, this.log);
      await this.adminTlsFiles.start();
    } else if (!isLoopbackHost(listenHost(admin.listen))) {
      this.log.warn({ listen: admin.listen }, `SECURITY: the admin API on ${admin.listen} is reachable beyond loopback without TLS; operator tokens cross the network in clear (set admin.tls)`);
    }
    if (xds.tls === undefined) return undefined;
    this.tlsFiles = new ReloadingTlsFiles(
      {
        certFile: path(xds.tls.certFile),
        keyFile: path(xds.tls.keyFile),
        ...(xds.tls.clientCaFile === undefined ? {} : { caFile: path(xds.tls.clientCaFile) }),
      },
      xds.tls.reloadIntervalMs,
      this.log,
    );
    await this.tlsFiles.start();
    this.log.info(
      { mutualTls: xds.tls.clientCaFile !== undefined, requireIdentity: identityRequired(this.config), tokens: this.tokenAuthority !== undefined },
      xds.tls.clientCaFile !== undefined ? 'xDS over mutual TLS: clients need a certificate from the client CA' : 'xDS over TLS',
    );
    return reloadingServerCredentials(this.tlsFiles);
  }

  /** `meshbridge ca rotate-workload-root` rewrites the schedule; the new roots are loaded while serving, a bad schedule is logged and ignored. */
  private watchRootSchedule(stateDir: string, intervalMs: number): void {
    const file = join(stateDir, WORKLOAD_CA_DIR, 'roots.json');
    let seen = '';
    const check = async () => {
      const stamp = await stat(file).then(
        (s) => `${s.mtimeMs}:${s.size}:${s.ino}`,
        () => '',
      );
      if (seen === '') seen = stamp;
      if (stamp === seen) return;
      seen = stamp;
      try {
        this.workloadCaValue = await WorkloadCa.open(stateDir, this.config.security.trustDomain);
        this.log.info({ signer: this.workloadCaValue.signer().subject, roots: this.workloadCaValue.trustBundle().match(/BEGIN CERTIFICATE/g)?.length }, 'workload CA roots reloaded');
      } catch (error) {
        this.log.error({ err: error }, `workload CA roots not reloaded; the previous ones stay in force: ${(error as Error).message}`);
      }
    };
    void check();
    this.workloadCaTimer = setInterval(() => void check(), intervalMs);
    this.workloadCaTimer.unref();
  }

  stop(): void {
    clearInterval(this.workloadCaTimer);
    this.guard.stop();
    this.tlsFiles?.stop();
    this.adminTlsFiles?.stop();
  }
}
