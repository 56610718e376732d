import type { ShortType, SynczBody } from '../admin/debug.js';
import { age, formatTable } from './admin-client.js';

/** Names listed per line before the rest are only counted: a client may subscribe to thousands. */
const MAX_NAMES_SHOWN = 10;

/** istioctl proxy-status's order of types. */
const COLUMNS: readonly ShortType[] = ['CDS', 'LDS', 'EDS', 'RDS'];

/**
 * `meshbridge status`: one row per connected proxy, each type SYNCED, NACKED,
 * STALE or NOT SENT; then, for each NACK, what the proxy said.
 */
export function formatStatus(body: SynczBody, now = Date.now()): string {
  if (body.proxies.length === 0) return 'no proxies connected\n';
  const rows = [['NAME', 'CLUSTER', 'VIEW', ...COLUMNS, 'ADDRESS', 'CONNECTED']];
  for (const p of body.proxies) {
    rows.push([p.node, p.cluster || '-', p.view, ...COLUMNS.map((t) => p.types[t].status), p.address, age(p.connectedSince, now)]);
  }
  let out = formatTable(rows);
  const nacks = body.proxies.flatMap((p) =>
    COLUMNS.filter((t) => p.types[t].status === 'NACKED').map((t) => {
      const nack = p.types[t].nack!;
      return `${p.node} ${t} NACKED version ${nack.version ?? '?'} at ${nack.at}: ${nack.message}\n`;
    }),
  );
  if (nacks.length > 0) out += `\n${nacks.join('')}`;
  return out;
}

/** `meshbridge status NODE`: every type of one proxy, with versions and subscriptions. */
export function formatNodeStatus(body: SynczBody, node: string): string | undefined {
  const streams = body.proxies.filter((p) => p.node === node);
  if (streams.length === 0) return undefined;
  return streams
    .map((p) => {
      const header = `node ${p.node} (cluster ${p.cluster || '-'}, ${p.view}, ${p.userAgent || 'unknown agent'}) from ${p.address}, connected since ${p.connectedSince}\n`;
      const rows = [['TYPE', 'STATUS', 'SENT', 'ACKED', 'SUBSCRIBED', 'NACK']];
      for (const t of COLUMNS) {
        const s = p.types[t];
        const subscribed = s.wildcard ? '*' : s.subscribed.length === 0 ? '-' : s.subscribed.length > 3 ? `${s.subscribed.length} names` : s.subscribed.join(',');
        rows.push([t, s.status, s.versionSent ?? '-', s.versionAcked ?? '-', subscribed, s.nack ? `${s.nack.message}` : '-']);
      }
      const missing = COLUMNS.filter((t) => p.types[t].placeholders.length > 0).map((t) => {
        const names = p.types[t].placeholders;
        const shown = names.length > MAX_NAMES_SHOWN ? `${names.slice(0, MAX_NAMES_SHOWN).join(', ')} and ${names.length - MAX_NAMES_SHOWN} more` : names.join(', ');
        return `${t} names that do not exist (a placeholder fails the client's calls at once): ${shown}\n`;
      });
      return header + formatTable(rows) + missing.join('');
    })
    .join('\n');
}
