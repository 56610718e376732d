/**
 * Test harness: run a real HashiCorp Consul agent on 127.0.0.1 with
 * run-time-chosen ports.
 *
 * The binary is built from the Go module proxy by `scripts/install-consul.sh`
 * and cached at `${MESHBRIDGE_CACHE:-~/.cache/meshbridge}/consul/<version>/consul`
 * (override with MESHBRIDGE_CONSUL_BIN=/path/to/consul).
 *
 * Agent modes
 * -----------
 * - "persistent" (default): a single real server,
 *     `consul agent -server -bootstrap-expect=1 -data-dir=<tmp> -disable-host-node-id`
 *   bound to loopback only. Raft log, catalog, KV, ACL tokens, agent-registered
 *   services and the node ID all live in the data dir, so `stop()` + `start()`
 *   brings back the same node with the same state and a monotonically
 *   continuing X-Consul-Index (what a real Consul restart looks like to a
 *   client). `-dev` cannot do this: dev mode always uses an in-memory raft
 *   store, so everything (and the raft index) is lost on restart. We copy the
 *   dev-mode tuning (raft_multiplier=1, 100ms gossip) so leader election after
 *   (re)start takes ~1-3 s.
 * - "dev": `consul agent -dev`. Slightly faster start, but every restart comes
 *   back EMPTY with the raft index reset. Useful to test "Consul lost its state /
 *   index went backwards" handling.
 *
 * ACLs (`acl: true`): `acl.enabled=true`, `default_policy="deny"`, and
 * `acl.tokens.initial_management=<uuid>` (the pre-1.11 name was `master`). The
 * same token is set as `acl.tokens.agent` so the agent can register its own
 * node / sync services; the `default` token is left empty, so anonymous
 * requests are denied. The management token is exposed as `aclToken`.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import * as dgram from "node:dgram";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

/** Keep in sync with CONSUL_VERSION in scripts/install-consul.sh. */
export const CONSUL_VERSION: string = process.env["CONSUL_VERSION"] ?? "v1.14.8";

export interface ConsulPorts {
  readonly http: number;
  readonly dns: number;
  readonly serfLan: number;
  readonly serfWan: number;
  readonly server: number;
  readonly grpc: number;
  readonly grpcTls: number;
}

export interface ConsulAgent {
  /** e.g. "http://127.0.0.1:41234" (no trailing slash) */
  readonly httpAddress: string;
  readonly httpPort: number;
  readonly ports: ConsulPorts;
  readonly datacenter: string;
  readonly nodeName: string;
  readonly mode: "persistent" | "dev";
  /** Management token when started with `acl: true`, else undefined. */
  readonly aclToken?: string;
  /** Agent stdout+stderr (appended across restarts). */
  readonly logFile: string;
  /** Data dir (persistent mode) – survives stop()/start(). */
  readonly dataDir: string;
  readonly running: boolean;
  /** SIGTERM (then SIGKILL after a grace period); resolves once the process has exited. Idempotent. */
  stop(): Promise<void>;
  /** Start again after stop() on the SAME ports/data dir; resolves once leader + node are back. */
  start(): Promise<void>;
  /** stop() and delete the temp dir (data + log). */
  dispose(): Promise<void>;
  /** Last `lines` lines of the agent log. */
  logTail(lines?: number): string;
}

export interface StartConsulAgentOptions {
  acl?: boolean;
  datacenter?: string;
  nodeName?: string;
  /** Default "persistent" – see module comment. */
  mode?: "persistent" | "dev";
  /** Extra agent config (JSON config keys), written as a second config file; Consul merges it over ours. */
  extraConfig?: Record<string, unknown>;
  /** How long start()/restart waits for leader + node registration. Default 60 s. */
  startTimeoutMs?: number;
  /** Consul log level. Default "DEBUG". */
  logLevel?: string;
}

const INSTALL_SCRIPT = fileURLToPath(new URL("../../scripts/install-consul.sh", import.meta.url));

let verifiedBinary: string | undefined;

/**
 * Path of the cached consul binary (verified by running `consul version`).
 * Throws a loud Error telling you to run scripts/install-consul.sh if it is missing/broken.
 */
export function consulBinary(): string {
  if (verifiedBinary !== undefined) return verifiedBinary;
  const cacheRoot = process.env["MESHBRIDGE_CACHE"] ?? path.join(os.homedir(), ".cache", "meshbridge");
  const bin = process.env["MESHBRIDGE_CONSUL_BIN"] ?? path.join(cacheRoot, "consul", CONSUL_VERSION, "consul");
  const fail = (why: string): never => {
    throw new Error(
      [
        "",
        "##################################################################",
        `## Consul binary not usable: ${why}`,
        `##   expected at: ${bin}`,
        "## Build it once (takes ~5 min cold, needs Go + proxy.golang.org):",
        `##   bash ${INSTALL_SCRIPT}`,
        "## (or point MESHBRIDGE_CONSUL_BIN at an existing consul binary)",
        "##################################################################",
      ].join("\n"),
    );
  };
  try {
    fs.accessSync(bin, fs.constants.X_OK);
  } catch {
    return fail("file missing or not executable");
  }
  try {
    execFileSync(bin, ["version"], { stdio: ["ignore", "pipe", "pipe"], timeout: 15_000 });
  } catch (err) {
    return fail(`\`consul version\` failed: ${(err as Error).message}`);
  }
  verifiedBinary = bin;
  return bin;
}

// ---------------------------------------------------------------------------
// ports

async function freeTcpPort(): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen({ port: 0, host: "127.0.0.1", exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error("could not determine free port"))));
    });
  });
}

async function udpPortFree(port: number): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const sock = dgram.createSocket("udp4");
    sock.once("error", () => {
      sock.close();
      resolve(false);
    });
    sock.bind({ port, address: "127.0.0.1", exclusive: true }, () => sock.close(() => resolve(true)));
  });
}

/** Distinct free ports; `needUdp` ones are also free for UDP (serf gossip, DNS). */
async function pickPorts(): Promise<ConsulPorts> {
  const taken = new Set<number>();
  const pick = async (needUdp: boolean): Promise<number> => {
    for (let i = 0; i < 50; i++) {
      const p = await freeTcpPort();
      if (taken.has(p)) continue;
      if (needUdp && !(await udpPortFree(p))) continue;
      taken.add(p);
      return p;
    }
    throw new Error("could not find a free port on 127.0.0.1");
  };
  return {
    http: await pick(false),
    dns: await pick(true),
    serfLan: await pick(true),
    serfWan: await pick(true),
    server: await pick(false),
    grpc: await pick(false),
    grpcTls: await pick(false),
  };
}

// ---------------------------------------------------------------------------
// agent

const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort so a crashed test run does not leave consul agents behind.
  process.on("exit", () => {
    for (const child of liveChildren) {
      try {
        child.kill("SIGKILL");
      } catch {
        /* ignore */
      }
    }
  });
}

function tailOf(file: string, lines: number): string {
  try {
    const text = fs.readFileSync(file, "utf8");
    return text.split("\n").slice(-lines - 1).join("\n");
  } catch {
    return "(no log)";
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface AgentParams {
  bin: string;
  baseDir: string;
  configDir: string;
  ports: ConsulPorts;
  datacenter: string;
  nodeName: string;
  mode: "persistent" | "dev";
  aclToken: string | undefined;
  startTimeoutMs: number;
}

class ConsulAgentImpl implements ConsulAgent {
  readonly httpAddress: string;
  readonly httpPort: number;
  readonly ports: ConsulPorts;
  readonly datacenter: string;
  readonly nodeName: string;
  readonly mode: "persistent" | "dev";
  readonly aclToken?: string;
  readonly logFile: string;
  readonly dataDir: string;
  private readonly bin: string;
  private readonly baseDir: string;
  private readonly configDir: string;
  private readonly startTimeoutMs: number;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private exitInfo: string | undefined;
  private disposed = false;

  constructor(p: AgentParams) {
    this.bin = p.bin;
    this.baseDir = p.baseDir;
    this.configDir = p.configDir;
    this.ports = p.ports;
    this.datacenter = p.datacenter;
    this.nodeName = p.nodeName;
    this.mode = p.mode;
    if (p.aclToken !== undefined) this.aclToken = p.aclToken;
    this.startTimeoutMs = p.startTimeoutMs;
    this.httpPort = p.ports.http;
    this.httpAddress = `http://127.0.0.1:${p.ports.http}`;
    this.logFile = path.join(p.baseDir, "consul.log");
    this.dataDir = path.join(p.baseDir, "data");
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  logTail(lines = 60): string {
    return tailOf(this.logFile, lines);
  }

  async start(): Promise<void> {
    if (this.disposed) throw new Error("ConsulAgent: start() after dispose()");
    if (this.child !== undefined) return;
    const args = ["agent", `-config-dir=${this.configDir}`, "-disable-host-node-id"];
    if (this.mode === "dev") args.push("-dev");
    fs.appendFileSync(this.logFile, `\n==== [harness] ${new Date().toISOString()} ${this.bin} ${args.join(" ")}\n`);
    const fd = fs.openSync(this.logFile, "a");
    let child: ChildProcess;
    try {
      child = spawn(this.bin, args, { stdio: ["ignore", fd, fd], env: { ...process.env, CONSUL_HTTP_TOKEN: "" } });
    } finally {
      fs.closeSync(fd);
    }
    this.child = child;
    this.exitInfo = undefined;
    liveChildren.add(child);
    this.exited = new Promise<void>((resolve) => {
      const done = (info: string): void => {
        this.exitInfo ??= info;
        liveChildren.delete(child);
        if (this.child === child) this.child = undefined;
        resolve();
      };
      child.once("exit", (code, signal) => done(`exited with code=${String(code)} signal=${String(signal)}`));
      child.once("error", (err) => done(`failed to spawn: ${err.message}`));
    });

    try {
      await this.waitReady();
    } catch (err) {
      const tail = this.logTail(80);
      await this.stop().catch(() => undefined);
      throw new Error(
        `Consul agent failed to start (${(err as Error).message}); log ${this.logFile}, last lines:\n${tail}`,
      );
    }
  }

  private async getJson(urlPath: string): Promise<unknown> {
    const headers: Record<string, string> = {};
    if (this.aclToken !== undefined) headers["X-Consul-Token"] = this.aclToken;
    const res = await fetch(this.httpAddress + urlPath, { headers, signal: AbortSignal.timeout(2_000) });
    if (!res.ok) throw new Error(`GET ${urlPath}: HTTP ${res.status} ${await res.text()}`);
    return (await res.json()) as unknown;
  }

  private async waitReady(): Promise<void> {
    const deadline = Date.now() + this.startTimeoutMs;
    let last = "no response yet";
    while (Date.now() < deadline) {
      if (this.child === undefined) throw new Error(`agent process ${this.exitInfo ?? "exited"}`);
      try {
        const leader = await this.getJson("/v1/status/leader");
        if (typeof leader !== "string" || leader === "") {
          last = "no leader yet";
        } else {
          const node = (await this.getJson(`/v1/catalog/node/${encodeURIComponent(this.nodeName)}`)) as {
            Node?: { Node?: string };
          } | null;
          if (node?.Node?.Node === this.nodeName) return;
          last = `leader ${leader}, but node ${this.nodeName} not in catalog yet`;
        }
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(100);
    }
    throw new Error(`timed out after ${this.startTimeoutMs} ms waiting for leader + node registration (last: ${last})`);
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child === undefined) {
      await this.exited;
      return;
    }
    child.kill("SIGTERM");
    const killTimer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    try {
      await this.exited;
    } finally {
      clearTimeout(killTimer);
    }
  }

  async dispose(): Promise<void> {
    await this.stop();
    this.disposed = true;
    fs.rmSync(this.baseDir, { recursive: true, force: true });
  }
}

/**
 * Start a Consul agent (single server, its own datacenter) on 127.0.0.1 with
 * fresh random ports and a fresh temp dir. Resolves once there is a leader and
 * the agent's node is in the catalog.
 */
export async function startConsulAgent(opts: StartConsulAgentOptions = {}): Promise<ConsulAgent> {
  const bin = consulBinary();
  installExitHook();
  const mode = opts.mode ?? "persistent";
  const datacenter = opts.datacenter ?? "dc1";
  const nodeName = opts.nodeName ?? `meshbridge-test-${randomUUID().slice(0, 8)}`;
  const aclToken = opts.acl === true ? randomUUID() : undefined;
  const ports = await pickPorts();

  const baseDir = fs.mkdtempSync(path.join(os.tmpdir(), "meshbridge-consul-"));
  const configDir = path.join(baseDir, "config");
  fs.mkdirSync(configDir);
  fs.mkdirSync(path.join(baseDir, "data"));

  const fastGossip = { gossip_interval: "100ms", probe_interval: "100ms", probe_timeout: "100ms", suspicion_mult: 3 };
  const config: Record<string, unknown> = {
    datacenter,
    node_name: nodeName,
    bind_addr: "127.0.0.1",
    advertise_addr: "127.0.0.1",
    advertise_addr_wan: "127.0.0.1",
    client_addr: "127.0.0.1",
    ports: {
      http: ports.http,
      https: -1,
      dns: ports.dns,
      serf_lan: ports.serfLan,
      serf_wan: ports.serfWan,
      server: ports.server,
      grpc: ports.grpc,
      grpc_tls: ports.grpcTls,
    },
    log_level: opts.logLevel ?? "DEBUG",
    disable_update_check: true, // no phoning home to checkpoint-api.hashicorp.com
    ui_config: { enabled: false },
  };
  if (mode === "persistent") {
    Object.assign(config, {
      server: true,
      bootstrap_expect: 1,
      data_dir: path.join(baseDir, "data"),
      disable_keyring_file: true,
      leave_on_terminate: false, // a stop() must look like a crash/restart, not a graceful leave
      skip_leave_on_interrupt: true,
      performance: { raft_multiplier: 1 },
      gossip_lan: fastGossip,
      gossip_wan: fastGossip,
    });
  }
  if (aclToken !== undefined) {
    config["acl"] = {
      enabled: true,
      default_policy: "deny",
      down_policy: "extend-cache",
      enable_token_persistence: true,
      tokens: { initial_management: aclToken, agent: aclToken },
    };
  }
  fs.writeFileSync(path.join(configDir, "00-harness.json"), JSON.stringify(config, null, 2));
  if (opts.extraConfig !== undefined) {
    fs.writeFileSync(path.join(configDir, "50-extra.json"), JSON.stringify(opts.extraConfig, null, 2));
  }

  const agent = new ConsulAgentImpl({
    bin,
    baseDir,
    configDir,
    ports,
    datacenter,
    nodeName,
    mode,
    aclToken,
    startTimeoutMs: opts.startTimeoutMs ?? 60_000,
  });
  await agent.start();
  return agent;
}
