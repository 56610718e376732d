import type { Config, RegistryConfig } from '../../config/config.js';
import { absolutePattern } from '../../istio/file-store.js';
import type { RegistryContext } from '../from-config.js';
import { FileRegistry } from './file-registry.js';

type FileConfig = Extract<RegistryConfig, { kind: 'file' }>;

export function fileFromConfig(config: FileConfig, { root, log, fileStores }: RegistryContext): FileRegistry {
  return new FileRegistry({ name: config.name, paths: config.paths, baseDir: root.baseDir }, log, fileStores);
}

export function fileRegistryPatterns(config: FileConfig, root: Config): string[] {
  return config.paths.map((p) => absolutePattern(p, root.baseDir));
}
