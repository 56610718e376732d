import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';

function capture(): { lines: string[]; sink: Writable } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
      done();
    },
  });
  return { lines, sink };
}

describe('log lines are bounded whatever clients send', () => {
  it('a 1 MB node id in a child binding, a 256 KB NACK message and a million names cost about a kilobyte each', () => {
    const { lines, sink } = capture();
    const log = createLogger('debug', sink, { maxFieldChars: 1024, maxListItems: 20, repeatedWarningsPerMinute: 20 });
    const nodeId = 'n'.repeat(1024 * 1024);
    const stream = log.child({ stream: 1, node: nodeId });
    stream.warn({ type: 'CDS', error: 'e'.repeat(256 * 1024) }, 'NACK');
    stream.debug({ names: Array.from({ length: 1_000_000 }, (_, i) => `name-${i}`) }, 'request');
    stream.info(`message from a client ${'m'.repeat(100_000)}`);
    expect(lines).toHaveLength(3);
    for (const line of lines) expect(line.length).toBeLessThan(4 * 1024);
    const nack = JSON.parse(lines[0]!) as Record<string, string>;
    expect(nack['node']).toBe(`${'n'.repeat(1024)}…(+${1024 * 1024 - 1024} chars)`);
    expect(nack['error']!.startsWith('eee')).toBe(true);
    const request = JSON.parse(lines[1]!) as { names: string[] };
    expect(request.names).toHaveLength(21);
    expect(request.names[20]).toBe('…(+999980 more)');
    expect((JSON.parse(lines[2]!) as { msg: string }).msg).toMatch(/…\(\+\d+ chars\)$/);
  });

  it('short values pass untouched and the token is still redacted', () => {
    const { lines, sink } = capture();
    createLogger('info', sink).info({ token: 'secret-token', names: ['a', 'b'], nested: { id: 'vm-1' } }, 'hello');
    const line = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(line).toMatchObject({ token: '[redacted]', names: ['a', 'b'], nested: { id: 'vm-1' }, msg: 'hello' });
  });

  it('repeated warnings are rate-limited per logger (one per stream): the rest counted, other streams unaffected', () => {
    const { lines, sink } = capture();
    const log = createLogger('info', sink, { maxFieldChars: 1024, maxListItems: 20, repeatedWarningsPerMinute: 5 });
    const noisy = log.child({ stream: 1 });
    const quiet = log.child({ stream: 2 });
    for (let i = 0; i < 1_000; i++) noisy.warn({ type: 'CDS', error: `bad ${i}` }, 'NACK');
    quiet.warn({ type: 'CDS' }, 'NACK');
    noisy.warn('something else');
    noisy.info('info lines are not limited');
    const parsed = lines.map((l) => JSON.parse(l) as { stream: number; msg: string });
    expect(parsed.filter((l) => l.stream === 1 && l.msg === 'NACK')).toHaveLength(5);
    expect(parsed.filter((l) => l.stream === 1 && l.msg.startsWith('NACK (more than 5 times in a minute'))).toHaveLength(1);
    expect(parsed.filter((l) => l.stream === 2 && l.msg === 'NACK')).toHaveLength(1);
    expect(parsed.some((l) => l.msg === 'something else')).toBe(true);
    expect(parsed.some((l) => l.msg === 'info lines are not limited')).toBe(true);
    expect(lines.length).toBe(5 + 1 + 1 + 1 + 1);
  });
});
