"""The daemon's HTTP endpoint on loopback: ``/healthz`` and ``/metrics``.

Loopback only: these pages say which CRMs are synced and how many alerts fire, which is
not for the network; a Prometheus agent or a reverse proxy on the host reaches them.
A small threading server from the standard library: two read-only pages need no framework.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from daemon.health import Health

log = logging.getLogger("salespulse.daemon")

LOOPBACK = "127.0.0.1"


class Endpoint:
    def __init__(self, port: int, registry: CollectorRegistry, health: Callable[[], Health]) -> None:
        registry_ = registry
        health_ = health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, generate_latest(registry_), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    result = health_()
                    self._send(200 if result.ok else 503, result.text().encode(), "text/plain; charset=utf-8")
                else:
                    self._send(404, b"not found: try /healthz or /metrics\n", "text/plain; charset=utf-8")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
                """Scrapes every few seconds would drown the job lines."""

        self.server = ThreadingHTTPServer((LOOPBACK, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="salespulse-http", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> Endpoint:
        self.thread.start()
        log.info("serving /healthz and /metrics on http://%s:%d", LOOPBACK, self.port)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
