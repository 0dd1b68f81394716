"""A tiny instance for the fleet tests: an HTTP server on the port it is given.

``GET /health`` answers 200 until ``GET /fail`` (then 503); any other path answers
``<VERSION> <port>`` (VERSION from the environment), so a test can tell which launch
template version served it. SIGTERM ends it at once.
"""

from __future__ import annotations

import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

healthy = True


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        global healthy
        if self.path == "/fail":
            healthy = False
        if self.path == "/health":
            code, body = (200, b"ok") if healthy else (503, b"failing")
        else:
            code = 200
            body = f"{os.environ.get('VERSION', '-')} {self.server.server_port}".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
