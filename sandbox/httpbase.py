"""The HTTP plumbing the three fakes share: a threaded loopback server, a route table,
fault injection and request counting.

A fake is a subclass of :class:`FakeServer` that fills ``routes`` with
``(method, path regex, handler)`` and implements :meth:`FakeServer.fault_response` for the
faults whose body is vendor specific (rate limit, server error, expired session).
Handlers take a :class:`Request` and return a :class:`Response`.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from sandbox.faults import Fault, FaultKind, FaultPlan

log = logging.getLogger("salespulse.sandbox")


@dataclass
class Request:
    method: str
    path: str  # without the query string
    query: dict[str, list[str]]  # parsed query string, repeated keys kept
    headers: dict[str, str]  # lower-cased names
    body: bytes
    match: re.Match[str] | None = None

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes sent as is
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return orjson.dumps(self.body)


Handler = Callable[[Request], Response]


class _ThreadingServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class FakeServer:
    """Base of a fake vendor server on 127.0.0.1 (port 0: the OS picks a free one)."""

    name = "fake"

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, port: int = 0) -> None:
        self.faults = FaultPlan()
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request seen
        # Tracebacks of handlers that raised: a bug in the fake, not an outage of the vendor.
        self.handler_errors: list[str] = []
        self._ssl_context = ssl_context
        self._port = port
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None

    # -- routing -----------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(pattern + r"\Z"), handler))

    def dispatch(self, request: Request) -> Response:
        allowed = False
        for method, pattern, handler in self.routes:
            m = pattern.match(request.path)
            if not m:
                continue
            if method != request.method:
                allowed = True
                continue
            request.match = m
            return handler(request)
        return self.not_found(request, method_exists=allowed)

    def not_found(self, request: Request, *, method_exists: bool) -> Response:  # noqa: ARG002
        """The vendor's answer to an unknown endpoint; fakes override it."""
        return Response(404, {"error": "not_found", "path": request.path})

    def fault_response(self, fault: Fault, request: Request) -> Response:
        """The vendor's body for a rate-limit / server-error / expired-session fault."""
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        handler_cls = _make_handler(self)
        server = _ThreadingServer(("127.0.0.1", self._port), handler_cls)
        if self._ssl_context is not None:
            server.socket = self._ssl_context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{self.name}-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if exc[0] is None:
            self.check_handlers()

    def check_handlers(self) -> None:
        """Fail (the test that used the fake) if a handler raised: the client only saw a 500,
        which a connector retries as an outage, so the bug would otherwise pass unnoticed."""
        if self.handler_errors:
            raise SandboxBug(
                f"{self.name}: {len(self.handler_errors)} handler(s) raised; first:\n{self.handler_errors[0]}"
            )


class SandboxBug(AssertionError):
    """A fake's handler raised: the fake, not the code under test, is wrong."""


def _make_handler(fake: FakeServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Small answers must not wait for Nagle + delayed ACK (~40 ms each).
        disable_nagle_algorithm = True
        server_version = fake.name

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("%s %s", fake.name, format % args)

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            fake.requests.append((self.command, self.path))
            fault = fake.faults.take(self.command, self.path)
            if fault is not None and fault.kind is FaultKind.DROP:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if fault is not None and fault.kind is FaultKind.TIMEOUT:
                time.sleep(fault.delay)
                fault = None
            try:
                if fault is not None and fault.kind is not FaultKind.TRUNCATE:
                    response = fake.fault_response(fault, request)
                else:
                    response = fake.dispatch(request)
            except Exception:
                log.exception("%s handler failed for %s %s", fake.name, self.command, self.path)
                fake.handler_errors.append(f"{self.command} {self.path}\n{traceback.format_exc()}")
                response = Response(500, {"error": "sandbox handler failed"})
            payload = response.payload()
            if fault is not None and fault.kind is FaultKind.TRUNCATE:
                payload = payload[: max(1, len(payload) // 2)]
            self.send_response(response.status)
            headers = {"Content-Type": "application/json;charset=UTF-8", **response.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            try:
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (a timeout test): nobody is left to answer.
                self.close_connection = True

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle

    return _Handler
