import type { Logger } from 'pino';
import type { Config, RegistryConfig } from '../config/config.js';
import type { IstioFileStores } from '../istio/file-store.js';
import { consulFromConfig } from './consul/from-config.js';
import { eurekaFromConfig } from './eureka/from-config.js';
import { fileFromConfig, fileRegistryPatterns } from './file/from-config.js';
import type { Registry } from './registry.js';

/** What every registry kind may draw on when it is built from the config. */
export interface RegistryContext {
  /** The whole config: its base directory and limits apply to every registry. */
  readonly root: Config;
  readonly log: Logger;
  /** Istio files, read and parsed once however many readers list them. */
  readonly fileStores: IstioFileStores;
  /** A registry answered with more than limits.registryResponseBytes. */
  readonly onBodyTooLarge: () => void;
}

/** How one kind of registry is built from its config section, and what the daemon must know about it. */
export interface RegistryKindSupport<C extends RegistryConfig> {
  create(config: C, context: RegistryContext): Registry;
  /**
   * Whether the daemon keeps the registry's last good state on disk: a
   * remote source does, local files are their own saved state.
   */
  readonly savesState: boolean;
  /** The Istio file patterns the registry reads, absolute; other readers are told when a document is in the wrong one. */
  istioPatterns(config: C, root: Config): string[];
}

type KindTable = { readonly [K in RegistryConfig['kind']]: RegistryKindSupport<Extract<RegistryConfig, { kind: K }>> };

const KINDS: KindTable = {
  file: { create: fileFromConfig, savesState: false, istioPatterns: fileRegistryPatterns },
  consul: { create: consulFromConfig, savesState: true, istioPatterns: () => [] },
  eureka: { create: eurekaFromConfig, savesState: true, istioPatterns: () => [] },
};

function support<C extends RegistryConfig>(config: C): RegistryKindSupport<C> {
  return KINDS[config.kind] as unknown as RegistryKindSupport<C>;
}

/** Builds the registry a config section describes, whatever its kind. */
export function registryFromConfig(config: RegistryConfig, context: RegistryContext): Registry {
  return support(config).create(config, context);
}

/** Whether the daemon keeps this registry's last good state on disk. */
export function registrySavesState(config: RegistryConfig): boolean {
  return support(config).savesState;
}

/** Every Istio file pattern the configured registries read, absolute. */
export function registryIstioPatterns(root: Config): string[] {
  return root.registries.flatMap((r) => support(r).istioPatterns(r, root));
}
