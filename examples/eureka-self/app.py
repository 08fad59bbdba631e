#!/usr/bin/env python3
"""eureka-self: a service that registers itself in Eureka with py-eureka-client, the way a
Spring Cloud app does, reading the variables Tideway injects for a `self` registry binding:

  EUREKA_CLIENT_SERVICEURL_DEFAULTZONE  the Eureka server(s)
  EUREKA_INSTANCE_INSTANCE_ID           the id to register under (Tideway's instance id)
  EUREKA_INSTANCE_METADATA_MAP_LANE     the lane (stable, canary)

It deregisters on SIGTERM. Nothing in it knows about Tideway.
"""

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from py_eureka_client import eureka_client

PORT = int(os.environ.get("PORT", "8080"))
APP = os.environ.get("APP_NAME", "selfie")
IID = os.environ.get("EUREKA_INSTANCE_INSTANCE_ID", f"127.0.0.1:{APP}:{PORT}")
LANE = os.environ.get("EUREKA_INSTANCE_METADATA_MAP_LANE", "stable")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"app": APP, "instance": IID, "lane": LANE}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stdout.write("%s\n" % (fmt % args))
        sys.stdout.flush()


def main():
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    eureka_client.init(
        eureka_server=os.environ["EUREKA_CLIENT_SERVICEURL_DEFAULTZONE"],
        app_name=APP,
        instance_id=IID,
        instance_host="127.0.0.1",
        instance_ip="127.0.0.1",
        instance_port=PORT,
        renewal_interval_in_secs=5,
        metadata={"lane": LANE},
    )
    print(f"registered {APP} as {IID} (lane {LANE})", flush=True)

    def stop(signum, frame):
        print("SIGTERM: deregistering", flush=True)
        eureka_client.stop()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
