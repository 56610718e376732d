#!/usr/bin/env node
// The quickstart's two halves:
//   node demo.mjs backends  starts the three greeter instances that mesh/greeter.yaml lists
//                           (or, with ports after it, instances on those ports only)
//   node demo.mjs client    calls xds:///greeter.mesh.local:50051 through meshbridge and
//                           prints which instance answered each call
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as xds from '@grpc/grpc-js-xds';
import * as protoLoader from '@grpc/proto-loader';

const here = dirname(fileURLToPath(import.meta.url));
const definition = protoLoader.loadSync(join(here, 'echo.proto'));
const { Echo } = grpc.loadPackageDefinition(definition).meshbridge.example;

const [command = 'client', target = 'xds:///greeter.mesh.local:50051'] = process.argv.slice(2);

if (command === 'backends') {
  const ports = process.argv.length > 3 ? process.argv.slice(3).map(Number) : [50061, 50062, 50063];
  for (const port of ports) {
    const server = new grpc.Server();
    server.addService(Echo.service, {
      Echo: (call, callback) => callback(null, { message: call.request.message, backend: `greeter-${port}` }),
    });
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (error) => {
      if (error) throw error;
      console.log(`greeter listening on 127.0.0.1:${port}`);
    });
  }
} else if (command === 'client') {
  if (!process.env.GRPC_XDS_BOOTSTRAP && !process.env.GRPC_XDS_BOOTSTRAP_CONFIG) {
    // The same bootstrap `meshbridge bootstrap --grpc` prints.
    process.env.GRPC_XDS_BOOTSTRAP_CONFIG = execFileSync(
      process.execPath,
      [join(here, '../../bin/meshbridge.js'), 'bootstrap', '--grpc', '--node-id', 'demo-client'],
      { encoding: 'utf8' },
    );
  }
  xds.register();
  const client = new Echo(target, grpc.credentials.createInsecure());
  const call = (n) => {
    client.Echo({ message: `hello ${n}` }, { deadline: Date.now() + 5000 }, (error, reply) => {
      console.log(error ? `call ${n}: ${error.message}` : `call ${n}: answered by ${reply.backend}`);
    });
  };
  let n = 0;
  setInterval(() => call(++n), 1000);
} else {
  console.error('usage: demo.mjs backends | client [target]');
  process.exit(2);
}
