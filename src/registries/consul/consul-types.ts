/**
 * The parts of Consul's HTTP API JSON that meshbridge reads. Every field is
 * optional or nullable where Consul may omit it or send null; the mapping
 * treats the wire as untrusted.
 */

export type ConsulCheckStatus = 'passing' | 'warning' | 'critical' | 'maintenance' | string;

export interface ConsulTaggedServiceAddress {
  readonly Address?: string;
  readonly Port?: number;
}

export interface ConsulNode {
  readonly ID?: string;
  readonly Node: string;
  readonly Address?: string;
  readonly Datacenter?: string;
  /** Node-level tagged addresses are plain strings: `lan`, `lan_ipv4`, `lan_ipv6`, `wan`, `wan_ipv4`, `wan_ipv6`. */
  readonly TaggedAddresses?: Readonly<Record<string, string>> | null;
  readonly Meta?: Readonly<Record<string, string>> | null;
}

export interface ConsulAgentService {
  /** Empty for a plain service; `connect-proxy`, `mesh-gateway`, `terminating-gateway`, ... otherwise. */
  readonly Kind?: string;
  readonly ID: string;
  readonly Service: string;
  readonly Tags?: readonly string[] | null;
  readonly Address?: string;
  /** Service-level tagged addresses carry a port: `lan_ipv4`, `lan_ipv6`, `wan_ipv4`, `wan_ipv6` (and `lan`/`wan`). */
  readonly TaggedAddresses?: Readonly<Record<string, ConsulTaggedServiceAddress>> | null;
  readonly Meta?: Readonly<Record<string, string>> | null;
  readonly Port?: number;
  readonly Weights?: { readonly Passing?: number; readonly Warning?: number } | null;
}

export interface ConsulHealthCheck {
  readonly Node: string;
  readonly CheckID: string;
  readonly Name?: string;
  readonly Status: ConsulCheckStatus;
  readonly ServiceID?: string;
  readonly ServiceName?: string;
}

/** One element of `/v1/health/service/<name>`. */
export interface ConsulServiceEntry {
  readonly Node: ConsulNode;
  readonly Service: ConsulAgentService;
  readonly Checks?: readonly ConsulHealthCheck[] | null;
}

/** `/v1/catalog/services`: service name to the union of its instances' tags. */
export type ConsulServiceList = Readonly<Record<string, readonly string[] | null>>;
