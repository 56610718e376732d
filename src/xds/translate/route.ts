import type { RouteConfiguration } from '../../generated/envoy/config/route/v3/RouteConfiguration.js';
import type { VirtualHost } from '../../generated/envoy/config/route/v3/VirtualHost.js';
import { isHttpProtocol, isProxylessPort, shortName } from '../../model/service.js';
import type { Service, ServicePort } from '../../model/service.js';
import { portRouting } from '../../model/routing/build.js';
import type { RoutingModel } from '../../model/routing/types.js';
import type { TranslationMemo } from './memo.js';
import { routesFor } from './http-route.js';
import type { RouteReader } from './http-route.js';
import { servicesByPort } from './listener.js';
import { proxylessRouteName, sidecarRouteName } from './names.js';

function virtualHost(service: Service, port: ServicePort, domains: string[], routing: RoutingModel, reader: RouteReader): VirtualHost {
  return { name: `${service.hostname}:${port.number}`, domains, routes: routesFor(service, port, routing, reader) };
}

/**
 * One route configuration per HTTP port, a virtual host per service. Domains
 * are the hostname, hostname:port and the short name; Envoy rejects a route
 * configuration with a duplicate domain, so a short name shared by two services is left out.
 * With `memo`, a virtual host whose routing is unchanged, and a configuration
 * whose virtual hosts are all unchanged, are the objects of the last build.
 */
export function buildSidecarRoutes(services: readonly Service[], routing: RoutingModel, memo?: TranslationMemo): RouteConfiguration[] {
  const routes: RouteConfiguration[] = [];
  for (const [portNumber, members] of servicesByPort(services)) {
    const http = members.filter((m) => isHttpProtocol(m.port.protocol));
    if (http.length === 0) continue;
    const shortCounts = new Map<string, number>();
    for (const m of http) {
      const short = shortName(m.service.hostname);
      shortCounts.set(short, (shortCounts.get(short) ?? 0) + 1);
    }
    const taken = new Set(http.map((m) => m.service.hostname));
    const virtualHosts = http.map((m) => {
      const { hostname } = m.service;
      const domains = [hostname, `${hostname}:${portNumber}`];
      const short = shortName(hostname);
      if (short !== hostname && shortCounts.get(short) === 1 && !taken.has(short)) {
        domains.push(short, `${short}:${portNumber}`);
      }
      const build = () => virtualHost(m.service, m.port, domains, routing, 'sidecar');
      // Keyed by what it reads, not by the service: an endpoint moving changes the service, not its routes. The
      // domains are in the key because whether the short name is there depends on the other services.
      return memo === undefined ? build() : memo.recallShared(`sidecar virtual host ${JSON.stringify(domains)}`, [portRouting(routing, m.service, m.port)], build);
    });
    const name = sidecarRouteName(portNumber);
    const build = (): RouteConfiguration => ({ name, virtual_hosts: virtualHosts });
    routes.push(memo === undefined ? build() : memo.recallShared(`sidecar route ${name}`, virtualHosts, build));
  }
  return routes;
}

/**
 * Proxyless clients match the virtual host against the name they dialled, with
 * or without the port. With `memo`, a service whose port routing is the very
 * object of the last build gets that build's route configurations back.
 */
export function buildProxylessRoutes(services: readonly Service[], routing: RoutingModel, memo?: TranslationMemo): RouteConfiguration[] {
  return services.flatMap((service) => {
    const ports = service.ports.filter(isProxylessPort);
    const build = () => ports.map((port) => proxylessRoute(service, port, routing));
    return memo === undefined ? build() : memo.recall(service, 'proxyless routes', ports.map((port) => portRouting(routing, service, port)), build);
  });
}

function proxylessRoute(service: Service, port: ServicePort, routing: RoutingModel): RouteConfiguration {
  return {
    name: proxylessRouteName(service.hostname, port.number),
    virtual_hosts: [virtualHost(service, port, [`${service.hostname}:${port.number}`, service.hostname], routing, 'proxyless')],
  };
}
