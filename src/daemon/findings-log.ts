import type { Logger } from 'pino';

/** Logs findings (conflicts, policy and translation diagnostics) when they change, not on every rebuild. */
export class FindingsLog {
  private readonly reported = new Map<string, string>();

  constructor(private readonly log: Logger) {}

  report(topic: string, messages: readonly string[], level: 'warn' | 'error' = 'warn'): void {
    const text = messages.join('\n');
    if (this.reported.get(topic) === text) return;
    this.reported.set(topic, text);
    for (const message of messages) this.log[level]({ topic }, message);
  }
}
