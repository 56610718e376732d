import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Each file gets its own process: grpc-js-xds keeps one xDS client per process.
    pool: 'forks',
    // Most files spend their time waiting on real servers (Envoy, Consul, Eureka, the daemon), not on
    // the CPU: two at once halve the wall time on a 2-core machine (vitest's default is cores - 1).
    maxWorkers: 2,
    minWorkers: 1,
    testTimeout: 30_000,
    // Daemons under test keep saved registry state (src/registries/saved-state.ts) here, never in the user's home.
    env: { XDG_STATE_HOME: `${import.meta.dirname}/test/.tmp/state` },
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
