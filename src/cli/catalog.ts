import type { CatalogEndpointView, CatalogServiceView, CatalogzBody } from '../admin/debug.js';
import { formatTable } from './admin-client.js';

function endpointAddress(service: CatalogServiceView, endpoint: CatalogEndpointView): string {
  const ports = service.ports.map((p) => ({ name: p.name, port: endpoint.ports[p.name] ?? p.number }));
  if (ports.length === 1) return `${endpoint.address.includes(':') ? `[${endpoint.address}]` : endpoint.address}:${ports[0]!.port}`;
  return `${endpoint.address} (${ports.map((p) => `${p.name}=${p.port}`).join(',')})`;
}

/** `meshbridge catalog [HOST]`: one row per endpoint, with its health, the registry it came from and its workload identity. */
export function formatCatalog(body: CatalogzBody): string {
  if (body.services.length === 0) return 'the catalog is empty\n';
  const rows = [['SERVICE', 'PORTS', 'ENDPOINT', 'HEALTH', 'WEIGHT', 'LOCALITY', 'SOURCE', 'IDENTITY']];
  for (const service of body.services) {
    const ports = service.ports.map((p) => `${p.number}/${p.protocol}`).join(',');
    if (service.endpoints.length === 0) rows.push([service.hostname, ports, '-', '-', '-', '-', service.registries.join(','), '-']);
    for (const endpoint of service.endpoints) {
      rows.push([
        service.hostname,
        ports,
        endpointAddress(service, endpoint),
        endpoint.health,
        String(endpoint.weight),
        endpoint.locality || '-',
        endpoint.registry,
        endpoint.identity ?? '-',
      ]);
    }
  }
  let out = formatTable(rows);
  // Where a registry had to choose a port's protocol (Consul: meta, tag or a default), say which and why.
  const chosen = body.services.flatMap((s) =>
    s.ports.filter((p) => p.protocolFrom !== undefined).map((p) => `protocol: ${s.hostname}:${p.number} is ${p.protocol}, ${p.protocolFrom}\n`),
  );
  if (chosen.length > 0) out += `\n${chosen.join('')}`;
  if (body.conflicts.length > 0) {
    out += `\n${body.conflicts.map((c) => `conflict: ${c.hostname}: ${c.message} (from ${c.sources.join(', ')})\n`).join('')}`;
  }
  return out;
}
