"""Scriptable faults shared by the three fake servers.

A test arms a fault ("the next 3 requests whose path matches /query answer 429 with
Retry-After: 1"); the server's request handler asks the plan before routing. Faults are
consumed in arming order; each has a countdown (``skip``: let that many matching requests
through first) and a number of ``times`` it fires.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from enum import StrEnum


class FaultKind(StrEnum):
    RATE_LIMIT = "rate_limit"  # 429 with the vendor's body and Retry-After
    SERVER_ERROR = "server_error"  # `status` (500/502/503) with a vendor-ish body
    TIMEOUT = "timeout"  # sleep `delay` seconds before answering normally
    DROP = "drop"  # close the connection without an answer
    TRUNCATE = "truncate"  # answer 200 but cut the JSON body in half
    EXPIRED_SESSION = "expired_session"  # 401 INVALID_SESSION_ID (Salesforce) / 401 (others)
    REQUEST_LIMIT = "request_limit"  # Salesforce 403 REQUEST_LIMIT_EXCEEDED
    JOB_FAILED = "job_failed"  # the Salesforce Bulk API 2.0 job this request creates ends Failed
    JOB_ABORTED = "job_aborted"  # ... ends Aborted (as if an admin aborted it)


@dataclass
class Fault:
    kind: FaultKind
    path: str = ".*"  # regex searched in the request path (with query string)
    method: str | None = None  # None: any method
    times: int = 1
    skip: int = 0
    status: int = 503
    retry_after: int = 1
    delay: float = 5.0
    fired: int = 0
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and bool(self._pattern.search(path))


class FaultPlan:
    """The armed faults of one server; thread-safe."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def arm(self, kind: FaultKind | str, **kw: object) -> Fault:
        fault = Fault(FaultKind(kind), **kw)  # type: ignore[arg-type]
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """The fault this request must suffer, if any (and count it)."""
        with self._lock:
            for fault in self._faults:
                if not fault.matches(method, path):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                fault.fired += 1
                if fault.fired >= fault.times:
                    self._faults.remove(fault)
                return fault
        return None

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._faults)
