"""Cross-protocol steps with the Python clients, one per invocation:

  eureka-register APP ID PORT LANE   register through py-eureka-client
  consul-register NAME ID PORT LANE  register through py-consul (TTL check, passed)
  eureka-find APP ID LANE            py-eureka-client sees ID UP in APP with metadata lane=LANE
  consul-find NAME ID LANE           py-consul sees ID passing in NAME with Meta lane=LANE
"""

import asyncio
import sys
import time

import consul
from py_eureka_client import eureka_basic as eb

from common import check, done, env, ok

command, name, iid = sys.argv[1], sys.argv[2], sys.argv[3]


def eureka_url():
    return env("EUREKA_URL")


def consul_client():
    return consul.Consul(host=env("CONSUL_HOST"), port=int(env("CONSUL_PORT")))


if command == "eureka-register":
    port, lane = int(sys.argv[4]), sys.argv[5]
    instance = eb.Instance(
        instanceId=iid, app=name.upper(), hostName="127.0.0.1", ipAddr="127.0.0.1",
        port=eb.PortWrapper(port=port, enabled=True), vipAddress=name.lower(),
        dataCenterInfo=eb.DataCenterInfo(), status="UP", metadata={"lane": lane},
        lastDirtyTimestamp=int(time.time() * 1000),
    )
    asyncio.run(eb.register(eureka_url(), instance))
    ok("eureka_register", iid)
elif command == "consul-register":
    port, lane = int(sys.argv[4]), sys.argv[5]
    c = consul_client()
    check(c.agent.service.register(name, service_id=iid, address="127.0.0.1", port=port, meta={"lane": lane},
                                   check=consul.Check.ttl("60s")), "register")
    check(c.agent.check.ttl_pass(f"service:{iid}"), "ttl_pass")
    ok("consul_register", iid)
elif command == "eureka-find":
    lane = sys.argv[4]
    app = asyncio.run(eb.get_application(eureka_url(), name))
    found = app.get_instance(iid)
    check(found is not None, f"{iid} not in {name}: {[i.instanceId for i in app.instances]}")
    check(found.status == "UP", f"{iid} status {found.status}")
    check(found.metadata.get("lane") == lane, f"{iid} metadata {found.metadata}")
    apps = asyncio.run(eb.get_applications(eureka_url()))
    check(any(i.instanceId == iid for i in apps.get_application(name).up_instances), "full registry")
    ok("eureka_find", f"{name}/{iid} {found.ipAddr}:{found.port.port}")
elif command == "consul-find":
    lane = sys.argv[4]
    c = consul_client()
    _, nodes = c.health.service(name, passing=True)
    found = [n for n in nodes if n["Service"]["ID"] == iid]
    check(len(found) == 1, f"{iid} not passing in {name}: {nodes}")
    check(found[0]["Service"]["Meta"].get("lane") == lane, f"Meta {found[0]['Service']['Meta']}")
    _, services = c.catalog.services()
    check(name.lower() in services, f"catalog {services}")
    ok("consul_find", f"{name}/{iid} {found[0]['Service']['Address']}:{found[0]['Service']['Port']}")
else:
    sys.exit(f"unknown command {command}")
done()
