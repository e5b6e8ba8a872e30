"""The fakes' shared plumbing: a handler that raises is a bug in the fake, and fails the test."""

from __future__ import annotations

import urllib.error
import urllib.request
from contextlib import nullcontext

import pytest

from sandbox.httpbase import FakeServer, Request, Response, SandboxBug


class Broken(FakeServer):
    name = "broken"

    def __init__(self) -> None:
        super().__init__()
        self.route("GET", "/ok", lambda _r: Response(200, {"ok": True}))
        self.route("GET", "/bug", self.bug)

    def bug(self, request: Request) -> Response:
        return Response(200, {"ratio": 1 / len(request.query)})  # ZeroDivisionError without a query


def get(server: FakeServer, path: str) -> int:
    try:
        with urllib.request.urlopen(server.base_url + path, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize(("paths", "fails"), [(["/ok", "/ok"], False), (["/ok", "/bug", "/ok"], True)])
def test_a_handler_that_raises_fails_the_test_with_its_traceback(paths: list[str], fails: bool) -> None:
    statuses = []
    with pytest.raises(SandboxBug) if fails else nullcontext() as raised, Broken() as server:
        statuses = [get(server, path) for path in paths]
    assert statuses == [500 if path == "/bug" else 200 for path in paths]  # the client sees an outage
    if fails:
        assert "GET /bug" in str(raised.value)
        assert "ZeroDivisionError" in str(raised.value)
