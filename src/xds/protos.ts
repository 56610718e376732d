import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
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

/**
 * The descriptor `npm run build` writes beside the compiled module
 * (scripts/build-dist-data.mjs): what a package loads, so that installs need
 * neither the .proto files nor @grpc/grpc-js-xds, which is a devDependency.
 */
export const DESCRIPTOR_FILE = 'envoy-api.json';

/** The .proto include dirs inside @grpc/grpc-js-xds; only a checkout with its devDependencies has them. */
function includeDirs(): string[] {
  const require = createRequire(import.meta.url);
  let packageDir: string;
  try {
    packageDir = dirname(require.resolve('@grpc/grpc-js-xds/package.json'));
  } catch (error) {
    throw new MeshbridgeError(
      'MB_PROTO_LOAD',
      `no ${DESCRIPTOR_FILE} beside ${fileURLToPath(import.meta.url)} and no @grpc/grpc-js-xds to read the .proto files from: run \`npm run build\``,
      { cause: error },
    );
  }
  return protoFiles.includeDirs.map((dir) => join(packageDir, 'deps', dir));
}

export interface EnvoyApi {
  readonly ads: AdsGrpcType;
  readonly csds: CsdsGrpcType;
  /** SDS, which `meshbridge agent` serves to its local Envoy. */
  readonly sds: { envoy: { service: { secret: { v3: { SecretDiscoveryService: grpc.ServiceClientConstructor } } } } };
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

/** The Envoy API files meshbridge serves, as protobufjs JSON: what the build writes to DESCRIPTOR_FILE. */
export function envoyApiDescriptor(): protobuf.INamespace {
  return loadEnvoyRoot(protoFiles.files).toJSON({ keepComments: false });
}

/**
 * The built descriptor when there is one; otherwise (a checkout running from
 * src/, as the tests do) the same API parsed from the .proto files.
 */
function envoyApiSource(): { json: protobuf.INamespace; from: string } {
  const built = fileURLToPath(new URL(DESCRIPTOR_FILE, import.meta.url));
  if (!existsSync(built)) {
    const from = includeDirs().join(', ');
    try {
      return { json: envoyApiDescriptor(), from };
    } catch (error) {
      throw new MeshbridgeError('MB_PROTO_LOAD', `cannot load Envoy's API from ${from}`, { cause: error });
    }
  }
  try {
    return { json: JSON.parse(readFileSync(built, 'utf8')) as protobuf.INamespace, from: built };
  } catch (error) {
    throw new MeshbridgeError('MB_PROTO_LOAD', `cannot read Envoy's API from ${built}`, { cause: error });
  }
}

/**
 * Envoy's v3 API: the descriptor built from the .proto files shipped inside
 * @grpc/grpc-js-xds. Building it from the .proto files takes about a second,
 * so the result is shared; it holds no state.
 */
export function loadEnvoyApi(): EnvoyApi {
  if (loaded !== undefined) return loaded;
  const { json, from } = envoyApiSource();
  try {
    const definition = protoLoader.fromJSON(json, LOADER_OPTIONS);
    const grpcObject = grpc.loadPackageDefinition(definition);
    const root = protobuf.Root.fromJSON(json);
    root.resolveAll();
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
      sds: grpcObject as unknown as EnvoyApi['sds'],
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
    throw new MeshbridgeError('MB_PROTO_LOAD', `cannot load Envoy's API from ${from}`, { cause: error });
  }
}
