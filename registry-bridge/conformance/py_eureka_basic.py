"""py-eureka-client's basic calls (eureka_basic): register, heartbeat, status update and
override removal, cancel, and every discovery call, parsed by the client's own XML reader.

The server answers XML here: py-eureka-client sends no Accept header.
"""

import asyncio
from urllib.error import HTTPError

from py_eureka_client import eureka_basic as eb

from common import check, done, env, ok

URL = env("EUREKA_URL")
APP = "BASIC-PY"
IID = "127.0.0.1:basic-py:9001"


def instance(status="UP", last_dirty=1):
    return eb.Instance(
        instanceId=IID,
        app=APP,
        hostName="127.0.0.1",
        ipAddr="127.0.0.1",
        port=eb.PortWrapper(port=9001, enabled=True),
        securePort=eb.PortWrapper(port=9443, enabled=False),
        vipAddress="basic-py",
        secureVipAddress="basic-py-secure",
        dataCenterInfo=eb.DataCenterInfo(),
        status=status,
        overriddenstatus="UNKNOWN",
        leaseInfo=eb.LeaseInfo(renewalIntervalInSecs=30, durationInSecs=90),
        metadata={"management.port": "9001", "lane": "canary", "version": "1.2.0"},
        homePageUrl="http://127.0.0.1:9001/",
        statusPageUrl="http://127.0.0.1:9001/info",
        healthCheckUrl="http://127.0.0.1:9001/health",
        lastUpdatedTimestamp=last_dirty,
        lastDirtyTimestamp=last_dirty,
    )


async def expect_404(coro, what):
    try:
        await coro
    except HTTPError as e:
        check(e.code == 404, f"{what}: expected 404, got {e.code}")
        return
    raise AssertionError(f"{what}: expected 404, got success")


async def main():
    await eb.register(URL, instance())
    ok("register")

    apps = await eb.get_applications(URL)
    app = apps.get_application(APP)
    check(len(app.up_instances) == 1, f"full fetch: {APP} has no UP instance")
    got = app.instances[0]
    check(got.instanceId == IID, f"instanceId {got.instanceId}")
    check(got.port.port == 9001 and got.port.enabled, "port")
    check(got.securePort.enabled is False, "securePort")
    check(got.metadata.get("lane") == "canary", f"metadata {got.metadata}")
    check(got.leaseInfo.durationInSecs == 90, "leaseInfo")
    check(got.dataCenterInfo.className.endswith("DefaultDataCenterInfo"), "dataCenterInfo class")
    check("UP_" in apps.appsHashcode, f"apps__hashcode {apps.appsHashcode}")
    ok("get_applications", apps.appsHashcode)

    single = await eb.get_application(URL, APP.lower())
    check(single.name == APP and len(single.instances) == 1, "get_application")
    ok("get_application")

    one = await eb.get_app_instance(URL, APP, IID)
    check(one.instanceId == IID and one.status == "UP", "get_app_instance")
    ok("get_app_instance")

    # py-eureka-client 0.13.3's get_instance forgets an await; it returns a coroutine.
    by_id = await eb.get_instance(URL, IID)
    if asyncio.iscoroutine(by_id):
        by_id = await by_id
    check(by_id.instanceId == IID, "get_instance")
    ok("get_instance")

    vip = await eb.get_vip(URL, "basic-py")
    check(len(vip.get_application(APP).instances) == 1, "get_vip")
    svip = await eb.get_secure_vip(URL, "basic-py-secure")
    check(len(svip.get_application(APP).instances) == 1, "get_secure_vip")
    none = await eb.get_vip(URL, "no-such-vip")
    check(len(none.applications) == 0, "get_vip of an unknown VIP is empty")
    ok("vips")

    delta = await eb.get_delta(URL)
    check(delta.appsHashcode == apps.appsHashcode, "delta carries the full hash")
    check(any(i.instanceId == IID for a in delta.applications for i in a.instances), "delta has the registration")
    ok("get_delta", delta.versionsDelta)

    await eb.send_heartbeat(URL, APP, IID, last_dirty_timestamp=1)
    ok("send_heartbeat")

    await eb.status_update(URL, APP, IID, last_dirty_timestamp=1, status="OUT_OF_SERVICE")
    one = await eb.get_app_instance(URL, APP, IID)
    check(one.status == "OUT_OF_SERVICE", f"status after override: {one.status}")
    check(one.overriddenstatus == "OUT_OF_SERVICE", f"overriddenstatus {one.overriddenstatus}")
    # A heartbeat keeps the override.
    await eb.send_heartbeat(URL, APP, IID, last_dirty_timestamp=1)
    one = await eb.get_app_instance(URL, APP, IID)
    check(one.status == "OUT_OF_SERVICE", "override survives heartbeat")
    apps = await eb.get_applications(URL)
    check(len(apps.get_application(APP).up_instances) == 0, "OUT_OF_SERVICE is not up")
    ok("status_update")

    await eb.delete_status_override(URL, APP, IID, last_dirty_timestamp="1")
    one = await eb.get_app_instance(URL, APP, IID)
    check(one.status == "UNKNOWN", f"status after override removal: {one.status}")
    # UNKNOWN makes the next heartbeat 404, which sends the real client back to register.
    await expect_404(eb.send_heartbeat(URL, APP, IID, last_dirty_timestamp=1), "heartbeat after override removal")
    await eb.register(URL, instance(last_dirty=2))
    one = await eb.get_app_instance(URL, APP, IID)
    check(one.status == "UP", f"status after re-register: {one.status}")
    ok("delete_status_override")

    # A client whose copy is newer than the server's gets 404 (time to re-register).
    await expect_404(eb.send_heartbeat(URL, APP, IID, last_dirty_timestamp=99), "heartbeat with newer lastDirtyTimestamp")
    await expect_404(eb.send_heartbeat(URL, APP, "no-such-id", last_dirty_timestamp=1), "heartbeat of unknown instance")
    ok("heartbeat_404")

    await eb.cancel(URL, APP, IID)
    await expect_404(eb.get_application(URL, APP), "get_application after cancel")
    await expect_404(eb.cancel(URL, APP, IID), "cancel twice")
    ok("cancel")
    done()


asyncio.run(main())
