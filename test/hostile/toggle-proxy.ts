import * as net from 'node:net';

export type ProxyMode = 'pass' | 'hang';

/**
 * A TCP proxy in front of a registry that can turn slow at will: in `hang`
 * mode it accepts connections and never answers (a registry that is up but
 * stuck), so only timeouts end the requests.
 */
export class ToggleProxy {
  mode: ProxyMode = 'pass';
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  private constructor(private readonly targetPort: number) {
    this.server = net.createServer((client) => {
      this.sockets.add(client);
      client.on('close', () => this.sockets.delete(client));
      client.on('error', () => undefined);
      if (this.mode === 'hang') return;
      const upstream = net.connect(this.targetPort, '127.0.0.1');
      this.sockets.add(upstream);
      upstream.on('close', () => this.sockets.delete(upstream));
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.pipe(upstream).pipe(client);
    });
  }

  static async start(targetPort: number): Promise<ToggleProxy & { port: number }> {
    const proxy = new ToggleProxy(targetPort);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    return Object.assign(proxy, { port: (proxy.server.address() as net.AddressInfo).port });
  }

  /** Cuts every connection open now (keep-alive ones included), so the new mode applies to what comes next. */
  cutAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  async close(): Promise<void> {
    this.cutAll();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
