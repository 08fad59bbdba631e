"""Tests for the hello sample app: each test runs app.py as a subprocess.

    python3 -m unittest discover -s examples/hello -p 'test_*.py' -v
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app.py")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HelloTest(unittest.TestCase):
    def start(self, **env):
        """Start app.py on a free port with `env` and wait until it accepts connections."""
        port = free_port()
        full = {k: v for k, v in os.environ.items()
                if not k.startswith(("HELLO_", "TIDEWAY_")) and k not in ("PORT", "GREETING")}
        full.update({
            "PORT": str(port),
            "TIDEWAY_NAMESPACE": "default",
            "TIDEWAY_APP": "hello",
            "TIDEWAY_VERSION": "v7",
            "TIDEWAY_INSTANCE": "hello-v7-0",
        })
        full.update({k: str(v) for k, v in env.items()})
        proc = subprocess.Popen([sys.executable, APP], env=full, cwd=os.path.dirname(APP),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(self._stop, proc)
        deadline = time.monotonic() + 5
        while True:
            if proc.poll() is not None:
                out, err = proc.communicate()
                self.fail(f"app exited early with {proc.returncode}: {out}{err}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.fail("app did not start listening within 5 s")
                time.sleep(0.02)
        self.port = port
        return proc

    @staticmethod
    def _stop(proc):
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=5)

    def get(self, path, conn=None):
        """GET path; returns (status, headers, body bytes)."""
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r, r.read()
        finally:
            if conn is None:
                c.close()

    def get_json(self, path):
        status, r, body = self.get(path)
        self.assertEqual(r.getheader("Content-Type"), "application/json")
        return status, json.loads(body)

    # -- tests -----------------------------------------------------------

    def test_root_reports_identity_from_env(self):
        proc = self.start(GREETING="bonjour")
        status, body = self.get_json("/")
        self.assertEqual(status, 200)
        self.assertEqual(body, {
            "greeting": "bonjour", "namespace": "default", "app": "hello",
            "version": "v7", "instance": "hello-v7-0", "pid": proc.pid, "path": "/",
        })

    def test_other_paths_behave_like_root_and_echo_path(self):
        self.start()
        status, body = self.get_json("/some/where?x=1")
        self.assertEqual(status, 200)
        self.assertEqual(body["path"], "/some/where")
        self.assertEqual(body["version"], "v7")

    def test_keep_alive(self):
        self.start()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        self.addCleanup(conn.close)
        for path in ("/", "/healthz", "/again"):
            status, r, body = self.get(path, conn)
            self.assertEqual(status, 200)
            self.assertEqual(int(r.getheader("Content-Length")), len(body))
        self.assertIsNotNone(conn.sock, "connection was closed between requests")

    def test_healthz_ok(self):
        self.start()
        status, r, body = self.get("/healthz")
        self.assertEqual((status, body), (200, b"ok\n"))

    def test_error_rate_one_gives_500_but_not_on_healthz(self):
        self.start()
        status, body = self.get_json("/?error_rate=1")
        self.assertEqual((status, body), (500, {"error": "injected"}))
        status, _, _ = self.get("/healthz?error_rate=1")
        self.assertEqual(status, 200)

    def test_env_error_rate_and_query_wins(self):
        self.start(HELLO_ERROR_RATE="1")
        self.assertEqual(self.get("/")[0], 500)
        self.assertEqual(self.get("/healthz")[0], 200)
        self.assertEqual(self.get("/?error_rate=0")[0], 200)

    def test_delay_ms(self):
        self.start()
        t0 = time.monotonic()
        status, _ = self.get_json("/?delay_ms=200")
        self.assertEqual(status, 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.2)

    def test_burn_ms(self):
        self.start()
        t0 = time.monotonic()
        self.assertEqual(self.get("/?burn_ms=100")[0], 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.1)

    def test_bad_knob_gives_400_naming_it(self):
        self.start()
        for query, name in [("delay_ms=abc", "delay_ms"), ("burn_ms=-1", "burn_ms"),
                            ("error_rate=2", "error_rate"), ("error_rate=", "error_rate"),
                            ("error_rate=nan", "error_rate")]:
            with self.subTest(query=query):
                status, body = self.get_json("/?" + query)
                self.assertEqual(status, 400)
                self.assertIn(name, body["error"])

    def test_bad_env_knob_fails_at_start(self):
        port = free_port()
        env = dict(os.environ, PORT=str(port), HELLO_DELAY_MS="soon")
        r = subprocess.run([sys.executable, APP], env=env, capture_output=True, text=True,
                           timeout=5)
        self.assertEqual(r.returncode, 2)
        self.assertIn("HELLO_DELAY_MS", r.stderr)

    def test_slow_start(self):
        t0 = time.monotonic()
        self.start(HELLO_START_DELAY_MS="600")
        status, _, body = self.get("/healthz")
        self.assertEqual(status, 503)
        # The app itself answers while starting; only the health check waits.
        self.assertEqual(self.get("/")[0], 200)
        while True:
            status, _, body = self.get("/healthz")
            if status == 200:
                break
            self.assertEqual(status, 503)
            self.assertLess(time.monotonic() - t0, 5, "healthz never became 200")
            time.sleep(0.05)
        self.assertEqual(body, b"ok\n")
        self.assertGreaterEqual(time.monotonic() - t0, 0.6)

    def test_crash_exits_with_code_3(self):
        proc = self.start()
        with self.assertRaises((http.client.HTTPException, ConnectionError)):
            self.get("/crash")
        self.assertEqual(proc.wait(timeout=5), 3)

    def test_sigterm_exits_zero(self):
        proc = self.start()
        self.assertEqual(self.get("/")[0], 200)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=5), 0)
        out, _ = proc.communicate()
        self.assertIn("hello listening on 127.0.0.1:", out)
        self.assertIn("GET / 200", out)

    def test_sigterm_finishes_in_flight_request(self):
        proc = self.start()
        result = {}

        def slow():
            try:
                result["status"] = self.get("/?delay_ms=500")[0]
            except Exception as e:  # reported below
                result["error"] = e

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.15)  # let the request reach the server
        proc.send_signal(signal.SIGTERM)
        t.join(timeout=5)
        self.assertEqual(result, {"status": 200})
        self.assertEqual(proc.wait(timeout=5), 0)
        # and it no longer accepts connections
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()

    @unittest.skipUnless(os.path.exists("/proc/self/status"), "needs /proc")
    def test_memory_mb_is_resident(self):
        proc = self.start(HELLO_MEMORY_MB="32")
        with open(f"/proc/{proc.pid}/status") as f:
            rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        self.assertGreaterEqual(rss_kb, 32 * 1024)


if __name__ == "__main__":
    unittest.main()
