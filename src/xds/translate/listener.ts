import type { Listener } from '../../generated/envoy/config/listener/v3/Listener.js';
import type { Diagnostic } from '../../errors.js';
import { isHttpProtocol, isProxylessPort } from '../../model/service.js';
import type { Service, ServicePort } from '../../model/service.js';
import { TypeUrl } from '../type-urls.js';
import {
  clusterName,
  proxylessListenerName,
  proxylessRouteName,
  sidecarListenerName,
  sidecarRouteName,
} from './names.js';
import { FAULT_FILTER } from './http-route.js';
import type { TranslationMemo } from './memo.js';
import { ADS_CONFIG_SOURCE, typed } from './typed.js';

/**
 * The fault filter is always present and inert until a route's
 * typed_per_filter_config turns it on, so VirtualService faults never need a listener change.
 */
const HTTP_FILTERS = [
  { name: FAULT_FILTER, typed_config: typed(TypeUrl.HttpFault, {}) },
  { name: 'envoy.filters.http.router', typed_config: typed(TypeUrl.Router, {}) },
];

function httpConnectionManager(statPrefix: string, routeName: string): object {
  return typed(TypeUrl.HttpConnectionManager, {
    stat_prefix: statPrefix,
    rds: { route_config_name: routeName, config_source: ADS_CONFIG_SOURCE },
    http_filters: HTTP_FILTERS,
  });
}

/** Services grouped by the port number they are reached on, ports ascending. */
export function servicesByPort(services: readonly Service[]): Map<number, { service: Service; port: ServicePort }[]> {
  const byPort = new Map<number, { service: Service; port: ServicePort }[]>();
  for (const service of services) {
    for (const port of service.ports) {
      const group = byPort.get(port.number);
      if (group === undefined) byPort.set(port.number, [{ service, port }]);
      else group.push({ service, port });
    }
  }
  return new Map([...byPort.entries()].sort(([a], [b]) => a - b));
}

/**
 * One outbound listener per service port on the bind address (VMs have no
 * iptables capture, so applications dial 127.0.0.1:<port>). HTTP ports route by
 * Host header; a TCP port can only carry one service, so other claimants are reported.
 */
export function buildSidecarListeners(services: readonly Service[], bind: string, diagnostics: Diagnostic[]): Listener[] {
  const listeners: Listener[] = [];
  for (const [portNumber, members] of servicesByPort(services)) {
    const name = sidecarListenerName(bind, portNumber);
    const http = members.filter((m) => isHttpProtocol(m.port.protocol));
    const opaque = members.filter((m) => !isHttpProtocol(m.port.protocol));
    let filter: object;
    if (http.length > 0) {
      filter = {
        name: 'envoy.filters.network.http_connection_manager',
        typed_config: httpConnectionManager(`outbound_${name}`, sidecarRouteName(portNumber)),
      };
      for (const m of opaque) diagnostics.push(portClash(m, portNumber, `HTTP services (${http.map((h) => h.service.hostname).join(', ')})`));
    } else {
      const [owner, ...rest] = opaque;
      filter = {
        name: 'envoy.filters.network.tcp_proxy',
        typed_config: typed(TypeUrl.TcpProxy, {
          stat_prefix: `outbound_${name}`,
          cluster: clusterName(portNumber, owner!.service.hostname),
        }),
      };
      for (const m of rest) diagnostics.push(portClash(m, portNumber, owner!.service.hostname));
    }
    listeners.push({
      name,
      address: { socket_address: { address: bind, port_value: portNumber } },
      traffic_direction: 'OUTBOUND',
      filter_chains: [{ filters: [filter] }],
    } as Listener);
  }
  return listeners;
}

function portClash(member: { service: Service; port: ServicePort }, port: number, holder: string): Diagnostic {
  return {
    severity: 'warning',
    source: `service ${member.service.hostname}`,
    field: `ports.${member.port.name}`,
    message: `${member.port.protocol} port ${port} is not reachable through the sidecar: the port is taken by ${holder}`,
  };
}

/**
 * Listeners for proxyless gRPC clients: an api_listener per `host:port`, and
 * one named `host` for the service's first HTTP-capable port (or port of undeclared protocol), so that
 * `xds:///host` works without a port as it does in Istio. With `memo`, a
 * service unchanged since the last build gets that build's listeners back.
 */
export function buildProxylessListeners(services: readonly Service[], memo?: TranslationMemo): Listener[] {
  return services.flatMap((service) => (memo === undefined ? proxylessListeners(service) : memo.recall(service, 'proxyless listeners', [], () => proxylessListeners(service))));
}

function proxylessListeners(service: Service): readonly Listener[] {
  const listeners: Listener[] = [];
  service.ports.filter(isProxylessPort).forEach((port, index) => {
    const route = proxylessRouteName(service.hostname, port.number);
    const names = [proxylessListenerName(service.hostname, port.number)];
    if (index === 0) names.push(proxylessListenerName(service.hostname));
    for (const name of names) {
      listeners.push({ name, api_listener: { api_listener: httpConnectionManager(name, route) } } as Listener);
    }
  });
  return listeners;
}
