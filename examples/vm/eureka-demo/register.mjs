#!/usr/bin/env node
// Registers greeter instances in Eureka exactly as a Spring Boot app with
// spring-cloud-starter-netflix-eureka-client does (same REST calls, same
// instance fields), renews their leases, and deregisters them on Ctrl-C.
//
//   node register.mjs EUREKA_URL APP PORT[=VERSION]...
//   node register.mjs http://127.0.0.1:8761/eureka greeter 50061 50062 50063=v2
//
// Each instance gets Spring Cloud's default id, HOST:APP:PORT, the VIP address
// APP (meshbridge names the service after it), and metadata protocol=grpc and
// version=VERSION (v1 unless given; eureka.instance.metadata-map.version in Spring).
const [base, app, ...specs] = process.argv.slice(2);
const versions = new Map(specs.map((spec) => [spec.split('=')[0], spec.split('=')[1] ?? 'v1']));
const ports = [...versions.keys()];
if (!base || !app || ports.length === 0 || ports.some((port) => !/^[0-9]{1,5}$/.test(port))) {
  console.error('usage: register.mjs EUREKA_URL APP PORT[=VERSION]...');
  process.exit(2);
}
const APP = app.toUpperCase();
const host = '127.0.0.1';
const RENEW_SECONDS = 5;

const instance = (port) => ({
  instance: {
    instanceId: `${host}:${app}:${port}`,
    hostName: host,
    app: APP,
    ipAddr: host,
    vipAddress: app,
    secureVipAddress: app,
    status: 'UP',
    port: { $: Number(port), '@enabled': 'true' },
    securePort: { $: 443, '@enabled': 'false' },
    homePageUrl: `http://${host}:${port}/`,
    statusPageUrl: `http://${host}:${port}/actuator/info`,
    healthCheckUrl: `http://${host}:${port}/actuator/health`,
    dataCenterInfo: { '@class': 'com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo', name: 'MyOwn' },
    leaseInfo: { renewalIntervalInSecs: RENEW_SECONDS, durationInSecs: RENEW_SECONDS * 3 },
    metadata: { protocol: 'grpc', version: versions.get(port), zone: 'zone-a', 'management.port': String(port) },
  },
});

async function call(method, path, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return response.status;
}

for (const port of ports) {
  const status = await call('POST', `/apps/${APP}`, instance(port));
  if (status !== 204) {
    console.error(`registering ${host}:${app}:${port} failed: HTTP ${status}`);
    process.exit(1);
  }
  console.log(`registered ${host}:${app}:${port} in ${base}`);
}

const renew = setInterval(async () => {
  for (const port of ports) {
    // 404 means Eureka forgot the instance (a restarted server): register again, as the Spring client does.
    const status = await call('PUT', `/apps/${APP}/${host}:${app}:${port}`).catch(() => 0);
    if (status === 404) await call('POST', `/apps/${APP}`, instance(port)).catch(() => 0);
  }
}, RENEW_SECONDS * 1000);

const stop = async () => {
  clearInterval(renew);
  for (const port of ports) await call('DELETE', `/apps/${APP}/${host}:${app}:${port}`).catch(() => 0);
  console.log('deregistered');
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
