// eureka-js-client against the built-in registry (servicePath /eureka/v2/apps/): start
// (register + full fetch), heartbeats, lookups by app and VIP, delta fetches that pick
// up a new service, re-registration after a 404 renewal, and stop (deregister).
'use strict';

const { Eureka } = require('eureka-js-client');
const { ok, check, env, sleep, waitFor, quietLogger, main } = require('./common');

const HOST = env('EUREKA_HOST');
const PORT = Number(env('EUREKA_PORT'));
const BASE = `http://${HOST}:${PORT}/eureka/v2/apps/`;

function client(app, instanceId, port) {
  return new Eureka({
    logger: quietLogger,
    shouldUseDelta: true,
    instance: {
      app,
      instanceId,
      hostName: '127.0.0.1',
      ipAddr: '127.0.0.1',
      statusPageUrl: `http://127.0.0.1:${port}/info`,
      port: { $: port, '@enabled': 'true' },
      vipAddress: `${app.toLowerCase()}.vip`,
      dataCenterInfo: {
        '@class': 'com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo',
        name: 'MyOwn',
      },
      metadata: { lane: 'canary' },
    },
    eureka: {
      host: HOST,
      port: PORT,
      servicePath: '/eureka/v2/apps/',
      heartbeatInterval: 300,
      registryFetchInterval: 300,
      maxRetries: 0,
    },
  });
}

const start = (c) => new Promise((resolve, reject) => c.start((e) => (e ? reject(e) : resolve())));
const stop = (c) => new Promise((resolve, reject) => c.stop((e) => (e ? reject(e) : resolve())));

main(async () => {
  const a = client('jsapp', 'jsapp-1', 9400);
  let heartbeats = 0;
  let registrations = 0;
  a.on('heartbeat', () => { heartbeats += 1; });
  a.on('registered', () => { registrations += 1; });
  await start(a);
  check(registrations === 1, 'registered once on start');
  ok('start');

  const own = a.getInstancesByAppId('JSAPP');
  check(own.length === 1 && own[0].instanceId === 'jsapp-1', `by app: ${JSON.stringify(own)}`);
  check(own[0].port.$ === 9400 && own[0].metadata.lane === 'canary', 'instance fields');
  check(a.getInstancesByVipAddress('jsapp.vip').length === 1, 'by VIP');
  ok('lookup');

  await waitFor('two heartbeats', () => heartbeats >= 2, 5000);
  ok('renew', heartbeats);

  // A second service registered after the first client's full fetch reaches it by delta.
  const b = client('jsother', 'jsother-1', 9401);
  await start(b);
  await waitFor('JSOTHER via delta', () => a.getInstancesByAppId('JSOTHER').length === 1, 5000);
  check(a.getInstancesByVipAddress('jsother.vip').length === 1, 'delta updates the VIP cache');
  ok('delta');

  // The server forgets the instance: the next renewal is 404 and the client re-registers.
  const res = await fetch(`${BASE}JSAPP/jsapp-1`, { method: 'DELETE' });
  check(res.status === 200, `raw cancel ${res.status}`);
  await waitFor('re-registration after a 404 renewal', () => registrations === 2, 5000);
  const back = await fetch(`${BASE}JSAPP/jsapp-1`, { headers: { Accept: 'application/json' } });
  check(back.status === 200, `instance back after re-register: ${back.status}`);
  ok('reregister_on_404');

  await stop(b);
  await waitFor('JSOTHER gone via delta', () => a.getInstancesByAppId('JSOTHER').length === 0, 5000);
  ok('delta_delete');

  await stop(a);
  const gone = await fetch(`${BASE}JSAPP`, { headers: { Accept: 'application/json' } });
  check(gone.status === 404, `app after stop: ${gone.status}`);
  ok('stop');
  await sleep(10);
});
