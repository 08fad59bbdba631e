"""py-eureka-client's full client lifecycle: init() registers and starts heartbeats and
registry fetches; a service registered later is discovered through the delta (the
client's hash check falls back to a full fetch); walk_nodes resolves an UP instance;
stop() deregisters.

Heartbeat and fetch interval is 1 s so the test is quick.
"""

import asyncio
import os
import time
from urllib.error import HTTPError

from py_eureka_client import eureka_basic as eb
from py_eureka_client import eureka_client

from common import check, done, env, ok, wait_for

URL = env("EUREKA_URL")
PORT = int(env("INSTANCE_PORT", "9100"))
APP = "LIFECYCLE-PY"
IID = f"127.0.0.1:lifecycle-py:{PORT}"


def run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def last_renewal():
    return run(eb.get_app_instance(URL, APP, IID)).leaseInfo.lastRenewalTimestamp


client = eureka_client.init(
    eureka_server=URL,
    app_name="lifecycle-py",
    instance_host="127.0.0.1",
    instance_ip="127.0.0.1",
    instance_port=PORT,
    renewal_interval_in_secs=1,
    duration_in_secs=30,
    metadata={"lane": "canary"},
)
ok("init")

mine = run(eb.get_app_instance(URL, APP, IID))
check(mine.status == "UP", f"registered status {mine.status}")
check(mine.metadata.get("lane") == "canary", f"metadata {mine.metadata}")
check(mine.metadata.get("management.port") == str(PORT), "management.port")
ok("registered", IID)

first = last_renewal()
wait_for("a heartbeat", lambda: last_renewal() > first, timeout=6)
ok("heartbeat")

own = client.applications.get_application(APP)
check(any(i.instanceId == IID for i in own.up_instances), "the client sees itself")
ok("discovery_full")

# A service that appears after start: found through the delta loop.
late = eb.Instance(
    instanceId="late-1",
    app="LATE-PY",
    hostName="127.0.0.1",
    ipAddr="127.0.0.1",
    port=eb.PortWrapper(port=9200, enabled=True),
    vipAddress="late-py",
    dataCenterInfo=eb.DataCenterInfo(),
    status="UP",
    lastDirtyTimestamp=int(time.time() * 1000),
)
run(eb.register(URL, late))
wait_for(
    "LATE-PY in the client's registry",
    lambda: len(client.applications.get_application("LATE-PY").up_instances) == 1,
    timeout=8,
)
ok("discovery_delta")

url = eureka_client.walk_nodes("late-py", "/ping", walker=lambda u: u)
check(url == "http://127.0.0.1:9200/ping", f"walk_nodes gave {url}")
ok("walk_nodes", url)

# Stop right after a heartbeat so the client's heartbeat thread (which stop() does not
# end) is asleep while it deregisters.
seen = last_renewal()
wait_for("the next heartbeat", lambda: last_renewal() > seen, timeout=6)
time.sleep(0.2)
eureka_client.stop()
try:
    run(eb.get_app_instance(URL, APP, IID))
    raise AssertionError("instance still registered after stop()")
except HTTPError as e:
    check(e.code == 404, f"expected 404 after stop, got {e.code}")
ok("stop")
done()
os._exit(0)
