#!/usr/bin/env python3
"""hello: the Tideway sample app.

A small HTTP service (standard library only) with knobs for latency, CPU burn,
injected errors, crashes, slow start and memory use, so the platform's health
checks, autoscaler, rollouts and limits can be exercised. See README.md.
"""

import json
import math
import os
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

STARTED = time.monotonic()

HOST = "127.0.0.1"
MAX_MS = 600_000  # upper bound for delay_ms / burn_ms (10 minutes)
DRAIN_TIMEOUT_S = 30.0  # how long SIGTERM waits for in-flight requests
IDLE_TIMEOUT_S = 120  # idle keep-alive connections are closed after this


class KnobError(ValueError):
    """An invalid knob value; the message names the parameter."""


def parse_ms(name, raw):
    try:
        value = int(raw.strip())
    except (AttributeError, ValueError):
        raise KnobError(f"{name} must be an integer number of milliseconds, got {raw!r}") from None
    if not 0 <= value <= MAX_MS:
        raise KnobError(f"{name} must be between 0 and {MAX_MS}, got {value}")
    return value


def parse_rate(name, raw):
    try:
        value = float(raw.strip())
    except (AttributeError, ValueError):
        raise KnobError(f"{name} must be a number between 0.0 and 1.0, got {raw!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise KnobError(f"{name} must be between 0.0 and 1.0, got {raw!r}")
    return value


def parse_mib(name, raw):
    try:
        value = int(raw.strip())
    except (AttributeError, ValueError):
        raise KnobError(f"{name} must be a whole number of MiB, got {raw!r}") from None
    if value < 0:
        raise KnobError(f"{name} must not be negative, got {value}")
    return value


# query parameter -> (environment default, parser)
KNOBS = {
    "delay_ms": ("HELLO_DELAY_MS", parse_ms),
    "burn_ms": ("HELLO_BURN_MS", parse_ms),
    "error_rate": ("HELLO_ERROR_RATE", parse_rate),
}


def env_knob(var, parser, default=0):
    raw = os.environ.get(var, "")
    return parser(var, raw) if raw.strip() else default


class Config:
    def __init__(self):
        port_raw = os.environ.get("PORT", "").strip() or "8080"
        try:
            self.port = int(port_raw)
        except ValueError:
            raise KnobError(f"PORT must be an integer, got {port_raw!r}") from None
        if not 0 <= self.port <= 65535:
            raise KnobError(f"PORT must be between 0 and 65535, got {self.port}")
        self.greeting = os.environ.get("GREETING", "hello")
        self.namespace = os.environ.get("TIDEWAY_NAMESPACE")
        self.app = os.environ.get("TIDEWAY_APP")
        self.version = os.environ.get("TIDEWAY_VERSION")
        self.instance = os.environ.get("TIDEWAY_INSTANCE")
        # Defaults for the per-request knobs; a query parameter overrides them.
        self.defaults = {name: env_knob(var, parser) for name, (var, parser) in KNOBS.items()}
        self.start_delay_ms = env_knob("HELLO_START_DELAY_MS", parse_ms)
        self.memory_mb = env_knob("HELLO_MEMORY_MB", parse_mib)


CONFIG = None  # set in main()
BALLAST = None  # HELLO_MEMORY_MB worth of touched memory, kept alive on purpose

_log_lock = threading.Lock()


def log(line, stream=None):
    stream = stream or sys.stdout
    with _log_lock:
        stream.write(line + "\n")
        stream.flush()


class InFlight:
    """Counts requests being answered, so SIGTERM can wait for them."""

    def __init__(self):
        self._cond = threading.Condition()
        self._count = 0
        self.draining = False

    def __enter__(self):
        with self._cond:
            self._count += 1

    def __exit__(self, *exc):
        with self._cond:
            self._count -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout):
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return self._count
                self._cond.wait(left)
        return 0


IN_FLIGHT = InFlight()


def allocate(mib):
    """Allocate `mib` MiB and write to every page so it is really resident."""
    if mib <= 0:
        return None
    buf = bytearray(mib * 1024 * 1024)
    page = 4096
    buf[::page] = b"\x01" * len(range(0, len(buf), page))
    return buf


def burn(ms):
    end = time.perf_counter() + ms / 1000.0
    x = 0
    while time.perf_counter() < end:
        for _ in range(1000):
            x += 1
    return x


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hello/1.0"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S

    # -- logging ---------------------------------------------------------

    def parse_request(self):
        self._t0 = time.perf_counter()
        return super().parse_request()

    def log_request(self, code="-", size="-"):
        t0 = getattr(self, "_t0", None)
        ms = (time.perf_counter() - t0) * 1000.0 if t0 is not None else 0.0
        status = getattr(code, "value", code)
        method = getattr(self, "command", None) or "-"
        path = getattr(self, "path", None) or "-"
        log(f"{method} {path} {status} {ms:.1f}ms")

    def log_message(self, fmt, *args):
        log(f"hello: {self.address_string()}: {fmt % args}", sys.stderr)

    # -- responses -------------------------------------------------------

    def _send(self, status, body, content_type):
        if isinstance(body, (dict, list)):
            body = json.dumps(body) + "\n"
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if IN_FLIGHT.draining:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def send_json(self, status, obj):
        self._send(status, obj, "application/json")

    def send_text(self, status, text):
        self._send(status, text + "\n", "text/plain; charset=utf-8")

    def _discard_body(self):
        # Keep the connection usable if a client sent a body with GET/HEAD.
        length = self.headers.get("Content-Length")
        if length:
            try:
                n = int(length)
            except ValueError:
                self.close_connection = True
                return
            while n > 0:
                chunk = self.rfile.read(min(n, 65536))
                if not chunk:
                    break
                n -= len(chunk)

    # -- routing ---------------------------------------------------------

    def do_GET(self):
        with IN_FLIGHT:
            self._discard_body()
            self.route()

    do_HEAD = do_GET

    def route(self):
        url = urlsplit(self.path)
        path = url.path or "/"

        if path == "/crash":
            log(f"{self.command} {self.path} crash: exiting with code 3")
            os._exit(3)

        is_health = path == "/healthz"
        try:
            knobs = self.knobs(url.query, is_health)
        except KnobError as e:
            self.send_json(400, {"error": str(e)})
            return

        if knobs["delay_ms"]:
            time.sleep(knobs["delay_ms"] / 1000.0)
        if knobs["burn_ms"]:
            burn(knobs["burn_ms"])

        if is_health:
            if IN_FLIGHT.draining:
                self.send_text(503, "draining")
            elif (time.monotonic() - STARTED) * 1000.0 < CONFIG.start_delay_ms:
                self.send_text(503, "starting")
            else:
                self.send_text(200, "ok")
            return

        rate = knobs["error_rate"]
        if rate > 0 and random.random() < rate:
            self.send_json(500, {"error": "injected"})
            return

        self.send_json(200, {
            "greeting": CONFIG.greeting,
            "namespace": CONFIG.namespace,
            "app": CONFIG.app,
            "version": CONFIG.version,
            "instance": CONFIG.instance,
            "pid": os.getpid(),
            "path": path,
        })

    def knobs(self, query, is_health):
        # /healthz only honours knobs given explicitly in its query string, so
        # HELLO_DELAY_MS and friends slow down traffic without failing health checks;
        # error_rate never applies to it.
        values = {name: 0 for name in KNOBS} if is_health else dict(CONFIG.defaults)
        params = parse_qs(query, keep_blank_values=True)
        for name, (_, parser) in KNOBS.items():
            if name in params:
                values[name] = parser(name, params[name][-1])
        if is_health:
            values["error_rate"] = 0.0
        return values


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    global CONFIG, BALLAST
    try:
        CONFIG = Config()
    except KnobError as e:
        log(f"hello: invalid configuration: {e}", sys.stderr)
        return 2

    BALLAST = allocate(CONFIG.memory_mb)

    try:
        server = Server((HOST, CONFIG.port), Handler)
    except OSError as e:
        log(f"hello: cannot listen on {HOST}:{CONFIG.port}: {e}", sys.stderr)
        return 1

    def on_signal(signum, _frame):
        if IN_FLIGHT.draining:
            return
        IN_FLIGHT.draining = True
        log(f"hello: {signal.Signals(signum).name} received, draining")
        # shutdown() blocks until serve_forever() returns, and serve_forever() runs
        # on this (main) thread, so it must be called from another one.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    port = server.server_address[1]
    extra = f" memory_mb={CONFIG.memory_mb}" if CONFIG.memory_mb else ""
    log(f"hello listening on {HOST}:{port} version={CONFIG.version or '-'} "
        f"instance={CONFIG.instance or '-'}{extra}")

    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()  # stop accepting: close the listening socket

    left = IN_FLIGHT.wait_idle(DRAIN_TIMEOUT_S)
    if left:
        log(f"hello: drain timed out with {left} request(s) in flight", sys.stderr)
    log("hello: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
