import { loadEnvoyApi } from '../../src/xds/protos.js';
import type { EnvoyApi } from '../../src/xds/protos.js';

/** Envoy's API, built once per test file (vitest isolates files) and shared by its helpers. */
export const envoyApi: EnvoyApi = loadEnvoyApi();
