// Cross-protocol lookups with the Node clients, one per invocation:
//   eureka-find APP ID LANE   eureka-js-client (fetch only) sees ID UP in APP with lane=LANE
//   consul-find NAME ID LANE  npm consul sees ID passing in NAME with Meta lane=LANE
'use strict';

const { Eureka } = require('eureka-js-client');
const Consul = require('consul');
const { ok, check, env, quietLogger, main } = require('./common');

const [command, name, id, lane] = process.argv.slice(2);

main(async () => {
  if (command === 'eureka-find') {
    const client = new Eureka({
      logger: quietLogger,
      instance: {},
      eureka: {
        host: env('EUREKA_HOST'),
        port: Number(env('EUREKA_PORT')),
        servicePath: '/eureka/apps/',
        registerWithEureka: false,
        maxRetries: 0,
      },
    });
    await new Promise((resolve, reject) => client.start((e) => (e ? reject(e) : resolve())));
    const found = client.getInstancesByAppId(name).filter((i) => i.instanceId === id);
    check(found.length === 1, `${id} not UP in ${name}`);
    check(found[0].metadata.lane === lane, `metadata ${JSON.stringify(found[0].metadata)}`);
    check(client.getInstancesByVipAddress(name.toLowerCase()).some((i) => i.instanceId === id), 'by VIP');
    await new Promise((resolve) => client.stop(resolve));
    ok('eureka_find', `${name}/${id} ${found[0].ipAddr}:${found[0].port.$}`);
  } else if (command === 'consul-find') {
    const consul = new Consul({ host: env('CONSUL_HOST'), port: Number(env('CONSUL_PORT')) });
    const entries = await consul.health.service({ service: name, passing: true });
    const found = entries.filter((e) => e.Service.ID === id);
    check(found.length === 1, `${id} not passing in ${name}`);
    check(found[0].Service.Meta.lane === lane, `Meta ${JSON.stringify(found[0].Service.Meta)}`);
    ok('consul_find', `${name}/${id} ${found[0].Service.Address}:${found[0].Service.Port}`);
  } else {
    throw new Error(`unknown command ${command}`);
  }
});
