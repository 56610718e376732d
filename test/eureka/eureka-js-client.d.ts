/** The few parts of eureka-js-client 4.5.0 the tests use (it ships no types). */
declare module 'eureka-js-client' {
  import type { EventEmitter } from 'node:events';

  interface EurekaClientConfig {
    instance: Record<string, unknown>;
    eureka: Record<string, unknown>;
    logger?: { debug(...a: unknown[]): void; info(...a: unknown[]): void; warn(...a: unknown[]): void; error(...a: unknown[]): void };
    requestMiddleware?: unknown;
  }

  class Eureka extends EventEmitter {
    constructor(config: EurekaClientConfig);
    start(callback?: (error?: Error) => void): void;
    stop(callback?: (error?: Error) => void): void;
  }

  const pkg: { Eureka: typeof Eureka };
  export default pkg;
  export { Eureka };
}
