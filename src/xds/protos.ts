import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { MeshbridgeError } from '../errors.js';
import protoFiles from './proto-files.json' with { type: 'json' };
import type { ProtoGrpcType as AdsGrpcType } from '../generated/ads.js';
import type { ProtoGrpcType as CsdsGrpcType } from '../generated/csds.js';
import type { Any } from '../generated/google/protobuf/Any.js';

/** Options shared by the gRPC service loader and the generated types; keep them identical. */
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

export function includeDirs(): string[] {
  const require = createRequire(import.meta.url);
  const packageDir = dirname(require.resolve('@grpc/grpc-js-xds/package.json'));
  return protoFiles.includeDirs.map((dir) => join(packageDir, 'deps', dir));
}

export interface EnvoyApi {
  readonly ads: AdsGrpcType;
  readonly csds: CsdsGrpcType;
  /** Encodes a message of the given type URL into an Any. */
  pack(typeUrl: string, message: object): Any & { type_url: string; value: Buffer };
  /** Decodes an Any's bytes into a plain object with the same field conventions as the generated types. */
  unpack(any: { type_url: string; value: Buffer | Uint8Array }): Record<string, unknown>;
}

let loaded: EnvoyApi | undefined;

/**
 * A protobufjs root holding the given Envoy API files, resolved against the
 * include dirs inside @grpc/grpc-js-xds. descriptor.proto (imported by the
 * validate and udpa annotations) comes with protobufjs rather than the deps.
 */
export function loadEnvoyRoot(files: readonly string[]): protobuf.Root {
  const dirs = includeDirs();
  const require = createRequire(import.meta.url);
  const descriptor = require('protobufjs/google/protobuf/descriptor.json') as {
    nested: { google: { nested: { protobuf: { nested: Record<string, protobuf.AnyNestedObject> } } } };
  };
  protobuf.common('descriptor', descriptor.nested.google.nested.protobuf.nested);
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    for (const dir of dirs) {
      const candidate = join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    return target;
  };
  root.loadSync([...files], { keepCase: true });
  root.resolveAll();
  return root;
}

/**
 * Loads Envoy's v3 API from the .proto files shipped inside @grpc/grpc-js-xds.
 * Parsing them takes about a second, so the result is shared; it holds no state.
 */
export function loadEnvoyApi(): EnvoyApi {
  if (loaded !== undefined) return loaded;
  const dirs = includeDirs();
  try {
    const definition = protoLoader.loadSync(protoFiles.files, { ...LOADER_OPTIONS, includeDirs: dirs });
    const grpcObject = grpc.loadPackageDefinition(definition);
    const root = loadEnvoyRoot(protoFiles.files);
    const types = new Map<string, protobuf.Type>();
    const typeFor = (typeUrl: string): protobuf.Type => {
      let type = types.get(typeUrl);
      if (type === undefined) {
        type = root.lookupType(typeUrl.slice(typeUrl.indexOf('/') + 1));
        types.set(typeUrl, type);
      }
      return type;
    };
    loaded = {
      ads: grpcObject as unknown as AdsGrpcType,
      csds: grpcObject as unknown as CsdsGrpcType,
      pack(typeUrl, message) {
        const type = typeFor(typeUrl);
        try {
          return { type_url: typeUrl, value: Buffer.from(type.encode(type.fromObject(message)).finish()) };
        } catch (error) {
          throw new MeshbridgeError('MB_RESOURCE_ENCODE', `cannot encode ${typeUrl}: ${(error as Error).message}`, { cause: error });
        }
      },
      unpack(any) {
        const type = typeFor(any.type_url);
        return type.toObject(type.decode(any.value), {
          longs: String,
          enums: String,
          defaults: false,
          oneofs: true,
        }) as Record<string, unknown>;
      },
    };
    return loaded;
  } catch (error) {
    throw new MeshbridgeError('MB_PROTO_LOAD', `cannot load Envoy's API from ${dirs.join(', ')}`, { cause: error });
  }
}
