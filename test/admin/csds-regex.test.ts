import { describe, expect, it } from 'vitest';
import { clientStatus } from '../../src/admin/csds.js';
import type { StreamInfo } from '../../src/xds/server/stream-state.js';
import { RegexError } from '../../src/util/safe-regex.js';
import { XDS_TYPES } from '../../src/xds/type-urls.js';

/** A connected client as CSDS sees it: only its node id matters to the matchers. */
function connected(id: string): StreamInfo {
  return {
    id: 1,
    protocol: 'sotw',
    node: { id, cluster: 'c', userAgent: 'test', view: 'sidecar' } as unknown as StreamInfo['node'],
    peer: '127.0.0.1:1',
    connectedAt: new Date(0),
    types: () => [
      { typeUrl: XDS_TYPES[0]!, wildcard: false, subscribed: [], versionSent: undefined, nonceSent: undefined, versionAcked: undefined, nack: undefined, responses: 0 },
    ],
  };
}

const source = (ids: string[]) => ({ connections: () => ids.map(connected), snapshot: () => undefined });
const regexRequest = (regex: string) => ({ node_matchers: [{ node_id: { match_pattern: 'safe_regex', safe_regex: { regex } } }] }) as never;

describe('CSDS node matchers: safe_regex is RE2', () => {
  it('matches the whole node id, as Envoy does', () => {
    const ids = ['vm-1', 'vm-12', 'db-1'];
    expect(clientStatus(source(ids), regexRequest('vm-\\d')).config!.map((c) => c.node?.id)).toEqual(['vm-1']);
    expect(clientStatus(source(ids), regexRequest('vm-\\d+')).config!.map((c) => c.node?.id)).toEqual(['vm-1', 'vm-12']);
  });

  it('a backtracking bomb against a long node id is answered, not catastrophic', () => {
    // With a backtracking engine, (a|a)*b against n a's takes 2^n steps: 26 froze the daemon for 12 s.
    const ids = ['a'.repeat(5_000), `${'a'.repeat(5_000)}b`];
    const answer = clientStatus(source(ids), regexRequest('(a|a)*b'));
    expect(answer.config!.map((c) => c.node?.id)).toEqual([ids[1]]);
  });

  it('refuses what RE2 refuses (lookahead, backreferences) and over-long patterns, as a client error', () => {
    for (const regex of ['(?=vm)vm-1', '(a)\\1', 'a'.repeat(5_000)]) {
      expect(() => clientStatus(source(['vm-1']), regexRequest(regex))).toThrow(RegexError);
    }
  });
});
