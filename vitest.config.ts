import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Each file gets its own process: grpc-js-xds keeps one xDS client per process.
    pool: 'forks',
    testTimeout: 30_000,
    // Daemons under test keep saved registry state (src/registries/saved-state.ts) here, never in the user's home.
    env: { XDG_STATE_HOME: `${import.meta.dirname}/test/.tmp/state` },
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
