"""A rule as an admin declares it in a rule file, and the evaluator interface every kind implements.

Contract shared by ``rules/`` (loading, validation, evaluation) and ``alerts/`` (lifecycle,
routing) and the daemon (schedules): the field names below are stable. Kind-specific
``params`` are validated by the kind's own pydantic model when the file is loaded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from models.settings import CompanySettings
from rules.findings import Evaluation


class Scope(BaseModel):
    """Which part of the company a rule looks at (names as the CRM shows them); empty: all of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    teams: tuple[str, ...] = ()
    exclude_teams: tuple[str, ...] = ()
    pipelines: tuple[str, ...] = ()
    exclude_pipelines: tuple[str, ...] = ()
    reps: tuple[str, ...] = ()  # names or e-mail addresses
    exclude_reps: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # salesforce | hubspot


class SeverityTiers(BaseModel):
    """Thresholds on the kind's measured value; the kind documents the direction (below / above)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warn: float | None = None
    critical: float | None = None


class Rule(BaseModel):
    """One declaration in a rule file (YAML key ``for`` is ``for_`` here)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str
    kind: str
    description: str = ""
    schedule: str = "0 9 * * 1-5"  # cron, company time zone
    scope: Scope = Field(default_factory=Scope)
    params: dict[str, Any] = Field(default_factory=dict)
    severity: SeverityTiers = Field(default_factory=SeverityTiers)
    for_: int = Field(1, alias="for", ge=1)  # consecutive evaluations before firing
    labels: dict[str, str] = Field(default_factory=dict)
    channel: str | None = None
    summary: str | None = None  # template with {placeholders} from the finding
    enabled: bool = True
    # Alerting (used by alerts/): re-notify a still-firing alert after this long; keep an alert
    # firing this long after its finding disappears (flapping); post a resolution notice.
    repeat_interval: timedelta = timedelta(days=1)
    keep_firing_for: timedelta = timedelta(0)
    send_resolved: bool = False


_T = TypeVar("_T")


@dataclass
class _Answer:
    ready: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


class Memo:
    """Aggregates that several rules of one check read (stage win rates, open pipeline per rep), computed
    once per check: a check reads one snapshot, so they cannot change in between. The check's rules may run
    on several threads (:func:`rules.check.evaluate_rules`): the first to ask computes, the others wait for
    its answer (or its exception) instead of computing it again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: dict[Hashable, _Answer] = {}

    def get(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        with self._lock:
            answer = self._answers.get(key)
            mine = answer is None
            if mine:
                answer = self._answers[key] = _Answer()
        if mine:
            try:
                answer.value = compute()
            except BaseException as exc:
                answer.error = exc
                raise
            finally:
                answer.ready.set()
        else:
            answer.ready.wait()
            if answer.error is not None:
                raise answer.error
        return answer.value


@dataclass(frozen=True)
class Warehouse:
    """What an evaluator may read: one connection (read-only use) and the company calendar."""

    conn: Connection
    company: CompanySettings
    memo: Memo = field(default_factory=Memo, compare=False, repr=False)

    def shared(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        """``compute()``, or what it returned for the same ``key`` earlier in this check."""
        return self.memo.get(key, compute)


class Kind(Protocol):
    """One rule kind: a params model and a pure evaluation over the warehouse as of an instant."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]

    def evaluate(self, rule: Rule, warehouse: Warehouse, now: datetime) -> Evaluation: ...
