import type { ShortType, SyncProxyView, SynczBody } from '../../src/admin/debug.js';
import { MetricName } from '../../src/admin/metrics.js';

export type { ShortType };
export const SHORT_TYPES: readonly ShortType[] = ['CDS', 'EDS', 'LDS', 'RDS'];

/** One series of a Prometheus text exposition: `name{k="v",...} value`. */
interface Series {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

function parseExposition(text: string): Series[] {
  const series: Series[] = [];
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!;
    series.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return series;
}

/**
 * A meshbridge replica seen from outside, through its admin API only: what it
 * says it sent (`/metrics`) and who is connected to it (`/debug/syncz`).
 */
export class ReplicaAdmin {
  constructor(readonly address: string) {}

  async syncz(): Promise<SynczBody> {
    const response = await fetch(`http://${this.address}/debug/syncz`);
    if (response.status !== 200) throw new Error(`${this.address}/debug/syncz: ${response.status}`);
    return (await response.json()) as SynczBody;
  }

  /** The connected streams of node `id` (usually one). */
  async streamsOf(id: string): Promise<SyncProxyView[]> {
    return (await this.syncz()).proxies.filter((p) => p.node === id);
  }

  /** meshbridge_xds_resources_sent_total of `protocol`, per type: every resource this replica has sent over that protocol. */
  async resourcesSent(protocol: 'sotw' | 'delta'): Promise<Record<ShortType, number>> {
    const response = await fetch(`http://${this.address}/metrics`);
    const series = parseExposition(await response.text()).filter((s) => s.name === MetricName.resourcesSent && s.labels.protocol === protocol);
    const sent = {} as Record<ShortType, number>;
    for (const type of SHORT_TYPES) {
      const found = series.find((s) => s.labels.type === type);
      if (found === undefined) throw new Error(`${this.address}/metrics has no ${MetricName.resourcesSent}{type="${type}",protocol="${protocol}"}`);
      sent[type] = found.value;
    }
    return sent;
  }
}

/** What `after` adds to `before`, per type. */
export function sentSince(before: Record<ShortType, number>, after: Record<ShortType, number>): Record<ShortType, number> {
  return Object.fromEntries(SHORT_TYPES.map((t) => [t, after[t] - before[t]])) as Record<ShortType, number>;
}
