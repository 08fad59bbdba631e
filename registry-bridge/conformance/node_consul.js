// The npm `consul` client against the built-in registry: register with checks and meta,
// the lists, health with ?passing, TTL pass, and watch() on a service, which must see a
// change without busy-looping (the Rust test counts the requests it made).
'use strict';

const Consul = require('consul');
const { ok, check, env, sleep, waitFor, main } = require('./common');

const consul = new Consul({ host: env('CONSUL_HOST'), port: Number(env('CONSUL_PORT')) });

main(async () => {
  await consul.agent.service.register({
    name: 'nodeweb',
    id: 'nodeweb-1',
    address: '127.0.0.1',
    port: 9500,
    tags: ['v1'],
    meta: { lane: 'canary' },
    check: { ttl: '30s', status: 'passing', notes: 'ttl check' },
  });
  ok('register');

  const services = await consul.agent.service.list();
  check(services['nodeweb-1'] && services['nodeweb-1'].Meta.lane === 'canary', 'agent.service.list');
  const catalog = await consul.catalog.service.list();
  check(JSON.stringify(catalog.nodeweb) === '["v1"]', `catalog.service.list ${JSON.stringify(catalog)}`);
  const nodes = await consul.catalog.service.nodes('nodeweb');
  check(nodes.length === 1 && nodes[0].ServiceID === 'nodeweb-1' && nodes[0].ServicePort === 9500, 'catalog.service.nodes');
  check(typeof (await consul.status.leader()) === 'string', 'status.leader');
  ok('lists');

  let healthCalls = 0;
  const passing = async () => {
    healthCalls += 1;
    return (await consul.health.service({ service: 'nodeweb', passing: true })).map((e) => e.Service.ID);
  };
  check(JSON.stringify(await passing()) === '["nodeweb-1"]', 'health passing');
  await consul.agent.check.fail({ id: 'service:nodeweb-1', note: 'down' });
  check((await passing()).length === 0, 'failed TTL is not passing');
  await consul.agent.check.pass({ id: 'service:nodeweb-1', note: 'up' });
  check((await passing()).length === 1, 'passed TTL is passing');
  ok('health');

  const watch = consul.watch({
    method: consul.health.service,
    options: { service: 'nodeweb', wait: '30s' },
  });
  const changes = [];
  watch.on('change', (data) => changes.push({ at: Date.now(), ids: data.map((e) => e.Service.ID).sort() }));
  watch.on('error', (e) => console.error('watch error:', e.message));
  await waitFor('the first watch result', () => changes.length === 1, 5000);
  ok('watch_started');

  // Idle: nothing changes for 3 s; the watch must sit in one blocking request.
  await sleep(3000);
  check(changes.length === 1, `watch reported ${changes.length - 1} spurious changes`);
  ok('watch_idle');

  const changedAt = Date.now();
  await consul.agent.service.register({
    name: 'nodeweb', id: 'nodeweb-2', address: '127.0.0.1', port: 9501,
    check: { ttl: '30s', status: 'passing' },
  });
  await waitFor('the watch to see nodeweb-2', () => changes.length === 2, 5000, 5);
  check(JSON.stringify(changes[1].ids) === '["nodeweb-1","nodeweb-2"]', `watch data ${JSON.stringify(changes[1])}`);
  ok('watch_change', `${changes[1].at - changedAt}ms`);
  watch.end();

  await consul.agent.service.deregister('nodeweb-1');
  await consul.agent.service.deregister('nodeweb-2');
  check(!(await consul.catalog.service.list()).nodeweb, 'deregistered');
  ok('deregister');
  console.log(`HEALTH_CALLS ${healthCalls}`);
});
