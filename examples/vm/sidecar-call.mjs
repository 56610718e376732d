#!/usr/bin/env node
// Calls the greeter through the local Envoy sidecar instead of xDS: a plain
// gRPC channel to Envoy's outbound listener, with the service name as the
// authority (Envoy picks the route by it, as it does by Host for HTTP).
//
//   node sidecar-call.mjs LISTENER AUTHORITY [CALLS] [HEADER=VALUE]
//   node sidecar-call.mjs 127.0.0.2:50061 greeter.service.consul 12 x-canary=yes
//
// Makes CALLS calls (12 by default), one after the other, each with a 5 s
// deadline, so it always ends; prints which instance answered each.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const [listener, authority, callsArg = '12', header] = process.argv.slice(2);
const calls = Number(callsArg);
if (!listener || !authority || !Number.isInteger(calls) || calls < 1 || calls > 1000 || (header && !header.includes('='))) {
  console.error('usage: sidecar-call.mjs LISTENER AUTHORITY [CALLS 1-1000] [HEADER=VALUE]');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const { Echo } = grpc.loadPackageDefinition(protoLoader.loadSync(join(here, '../quickstart/echo.proto'))).meshbridge.example;
const client = new Echo(listener, grpc.credentials.createInsecure(), { 'grpc.default_authority': authority });
const metadata = new grpc.Metadata();
if (header) metadata.set(header.slice(0, header.indexOf('=')), header.slice(header.indexOf('=') + 1));

for (let n = 1; n <= calls; n++) {
  const line = await new Promise((resolve) =>
    client.Echo({ message: `hello ${n}` }, metadata, { deadline: Date.now() + 5000 }, (error, reply) =>
      resolve(error ? `call ${n}: ${error.message}` : `call ${n}: answered by ${reply.backend}`),
    ),
  );
  console.log(line);
}
client.close();
