"""Helpers shared by the Python conformance scripts.

Every script reads its server addresses from the environment (EUREKA_URL, CONSUL_HOST,
CONSUL_PORT, CONSUL_TOKEN), prints one "OK <step>" line per verified step and "DONE" at
the end, and exits non-zero with a traceback on the first failure.
"""

import os
import sys
import time


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        sys.exit(f"missing environment variable {name}")
    return value


def ok(step, detail=""):
    print(f"OK {step}{(' ' + str(detail)) if detail != '' else ''}", flush=True)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def wait_for(what, predicate, timeout=10.0, interval=0.1):
    """Polls predicate() until it returns a truthy value; returns that value."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last_error = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error!r})")


def done():
    print("DONE", flush=True)
