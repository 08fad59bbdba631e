"""py-consul against the built-in registry: agent registration with HTTP, TCP and TTL
checks and Meta (the registry runs the HTTP and TCP checks itself), TTL pass/warn/fail
seen in health, ?passing, a blocking query, the catalog, agent endpoints, maintenance,
the ACL token, and deregistration.
"""

import http.server
import socketserver
import threading
import time

import consul
import requests

from common import check, done, env, ok, wait_for

HOST = env("CONSUL_HOST")
PORT = int(env("CONSUL_PORT"))
TOKEN = env("CONSUL_TOKEN")
BASE = f"http://{HOST}:{PORT}"


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"healthy")

    def log_message(self, *args):
        pass


target = socketserver.TCPServer(("127.0.0.1", 0), Health)
target_port = target.server_address[1]
threading.Thread(target=target.serve_forever, daemon=True).start()

c = consul.Consul(host=HOST, port=PORT, token=TOKEN)
anonymous = consul.Consul(host=HOST, port=PORT)

# ACL: a write without the token is refused the way Consul refuses it.
try:
    anonymous.agent.service.register("denied", service_id="denied-1")
    raise AssertionError("write without a token was accepted")
except consul.ACLPermissionDenied:
    pass
ok("acl_write_denied")

meta = {"lane": "canary", "version": "1.2.0"}
check(
    c.agent.service.register(
        "web", service_id="web-http", address="127.0.0.1", port=target_port, tags=["http"], meta=meta,
        check=consul.Check.http(f"http://127.0.0.1:{target_port}/health", interval="1s", timeout="1s"),
    ),
    "register web-http",
)
check(
    c.agent.service.register(
        "web", service_id="web-tcp", address="127.0.0.1", port=target_port, tags=["tcp"], meta=meta,
        check=consul.Check.tcp("127.0.0.1", target_port, interval="1s", timeout="1s"),
    ),
    "register web-tcp",
)
check(
    c.agent.service.register(
        "web", service_id="web-ttl", address="127.0.0.1", port=9300, tags=["ttl"], meta=meta,
        check=consul.Check.ttl("10s"),
    ),
    "register web-ttl",
)
ok("register")


def passing_ids():
    _, nodes = c.health.service("web", passing=True)
    return sorted(n["Service"]["ID"] for n in nodes)


# The registry runs the HTTP and TCP checks; a TTL check starts critical.
wait_for("HTTP and TCP checks to pass", lambda: passing_ids() == ["web-http", "web-tcp"], timeout=8)
_, nodes = c.health.service("web")
by_id = {n["Service"]["ID"]: n for n in nodes}
check(set(by_id) == {"web-http", "web-tcp", "web-ttl"}, f"health entries {sorted(by_id)}")
check(by_id["web-http"]["Service"]["Meta"] == meta, "Meta in health")
http_check = [k for k in by_id["web-http"]["Checks"] if k["CheckID"] == "service:web-http"][0]
check(http_check["Type"] == "http" and "200" in http_check["Output"], f"HTTP check {http_check}")
ttl_check = [k for k in by_id["web-ttl"]["Checks"] if k["CheckID"] == "service:web-ttl"][0]
check(ttl_check["Status"] == "critical", f"TTL starts critical: {ttl_check['Status']}")
check(any(k["CheckID"] == "serfHealth" for k in by_id["web-ttl"]["Checks"]), "serfHealth")
ok("http_tcp_checks")


def ttl_status():
    _, checks = c.health.checks("web")
    return [k["Status"] for k in checks if k["CheckID"] == "service:web-ttl"][0]


check(c.agent.check.ttl_pass("service:web-ttl", "all good"), "ttl_pass")
check(ttl_status() == "passing", "TTL pass visible")
check(passing_ids() == ["web-http", "web-tcp", "web-ttl"], "TTL passing counts as passing")
check(c.agent.check.ttl_warn("service:web-ttl", "slow"), "ttl_warn")
check(ttl_status() == "warning", "TTL warn visible")
check("web-ttl" not in passing_ids(), "warning is not passing")
check(c.agent.check.ttl_fail("service:web-ttl", "broken"), "ttl_fail")
check(ttl_status() == "critical", "TTL fail visible")
_, checks = c.health.checks("web")
check([k["Output"] for k in checks if k["CheckID"] == "service:web-ttl"] == ["broken"], "note becomes output")
r = requests.put(f"{BASE}/v1/agent/check/update/service:web-ttl", json={"Status": "passing", "Output": "updated"},
                 headers={"X-Consul-Token": TOKEN})
check(r.status_code == 200, f"check/update {r.status_code}")
check(ttl_status() == "passing", "check/update visible")
# A non-TTL check cannot be updated (Consul: 500); an unknown one is 404 (py-consul: False).
try:
    c.agent.check.ttl_pass("service:web-http")
    raise AssertionError("ttl_pass on an HTTP check succeeded")
except consul.ConsulException as e:
    check("does not have associated TTL" in str(e), str(e))
check(c.agent.check.ttl_pass("no-such-check") is False, "unknown check is 404")
ok("ttl_updates")

# Blocking query: returns soon after a change, not at the end of its wait.
index, _ = c.health.service("web")
check(int(index) >= 1, "X-Consul-Index")
result = {}


def block():
    started = time.monotonic()
    result["index"], result["nodes"] = c.health.service("web", index=index, wait="20s")
    result["elapsed"] = time.monotonic() - started


waiter = threading.Thread(target=block)
waiter.start()
time.sleep(0.5)
check(waiter.is_alive(), "a blocking query with the current index must wait")
changed_at = time.monotonic()
c.agent.check.ttl_fail("service:web-ttl", "blocking")
waiter.join(timeout=10)
check(not waiter.is_alive(), "blocking query never returned")
check(int(result["index"]) > int(index), "index moved")
latency = time.monotonic() - changed_at
check(latency < 1.0, f"blocking query returned {latency:.3f}s after the change")
ok("blocking_query", f"{latency * 1000:.0f}ms")

# A blocking query with no change returns at the end of its wait, with the same index.
started = time.monotonic()
same, _ = c.health.service("web", index=result["index"], wait="1s")
waited = time.monotonic() - started
check(same == result["index"] and 0.9 <= waited < 3, f"idle wait returned after {waited:.2f}s with {same}")
ok("blocking_timeout")

index, services = c.catalog.services()
check(sorted(services["web"]) == ["http", "tcp", "ttl"], f"catalog tags {services.get('web')}")
_, entries = c.catalog.service("web")
check(sorted(e["ServiceID"] for e in entries) == ["web-http", "web-tcp", "web-ttl"], "catalog.service")
check(all(e["ServiceMeta"] == meta for e in entries), "ServiceMeta")
_, tagged = c.catalog.service("web", tag="tcp")
check([e["ServiceID"] for e in tagged] == ["web-tcp"], "catalog tag filter")
ok("catalog")

services = c.agent.services()
check({"web-http", "web-tcp", "web-ttl"} <= set(services), f"agent.services {sorted(services)}")
check(services["web-tcp"]["Meta"] == meta and services["web-tcp"]["Port"] == target_port, "agent service fields")
checks = c.agent.checks()
check({"service:web-http", "service:web-tcp", "service:web-ttl"} <= set(checks), "agent.checks")
me = c.agent.self()
check(me["Config"]["Datacenter"] == "dc1", "agent.self datacenter")
check(c.status.leader().endswith(":8300"), "status.leader")
check(len(c.status.peers()) == 1, "status.peers")
ok("agent_endpoints")

check(c.agent.service.maintenance("web-http", True, "deploy"), "maintenance on")
check("web-http" not in passing_ids(), "maintenance is not passing")
_, nodes = c.health.service("web")
notes = [k["Notes"] for n in nodes for k in n["Checks"] if k["CheckID"] == "_service_maintenance:web-http"]
check(notes == ["deploy"], f"maintenance check {notes}")
check(c.agent.service.maintenance("web-http", False), "maintenance off")
check("web-http" in passing_ids(), "maintenance off passes again")
ok("maintenance")

# The HTTP/TCP target goes away: the registry's checks notice.
target.shutdown()
target.server_close()
wait_for("HTTP and TCP checks to fail", lambda: not ({"web-http", "web-tcp"} & set(passing_ids())), timeout=8)
ok("checks_fail")

for sid in ("web-http", "web-tcp", "web-ttl"):
    check(c.agent.service.deregister(sid), f"deregister {sid}")
check(c.agent.service.deregister("web-http") is False, "deregister unknown is 404")
_, entries = c.catalog.service("web")
check(entries == [], f"catalog after deregister {entries}")
_, services = c.catalog.services()
check("web" not in services, "service gone from catalog")
ok("deregister")
done()
