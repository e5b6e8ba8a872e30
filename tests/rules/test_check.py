"""evaluate_rules on real SQLite and PostgreSQL: one snapshot, read-only, a failing rule isolated."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime
from typing import ClassVar

import pytest
from pydantic import BaseModel
from sqlalchemy import Engine, event, func, insert, select

from models.database import open_warehouse
from models.settings import CompanySettings
from models.tables import opportunities, reps
from rules.check import evaluate_rules
from rules.findings import Evaluation
from rules.model import Rule, Warehouse
from rules.testdata import DataIn, write_data
from tests.rules.toy_kinds import TOY_KINDS

AT = datetime(2026, 3, 16, 9, tzinfo=UTC)
COMPANY = CompanySettings()
DATA = DataIn.model_validate(
    {
        "reps": [{"name": "Ana", "team": "West"}, {"name": "Bo", "team": "East"}],
        "deals": [
            {"name": "A", "owner": "Ana", "amount": 100, "path": [["Prospecting", -20]], "count": 3},
            {"name": "B", "owner": "Bo", "amount": 100, "path": [["Prospecting", -20], ["Closed Won", -2]]},
            {"name": "Future", "owner": "Bo", "amount": 100, "path": [["Prospecting", 5]], "count": 3},
        ],
    }
)


def rule(rule_id: str, kind: str, **fields) -> Rule:
    return Rule.model_validate({"id": rule_id, "kind": kind, **fields})


@pytest.fixture
def company_warehouse(warehouse: Engine) -> Engine:
    with warehouse.begin() as conn:
        write_data(conn, DATA, AT, COMPANY)
    return warehouse


def test_findings_carry_the_rule_files_labels_summary_and_instant(company_warehouse: Engine) -> None:
    rules = [
        rule("many", "open_deals", severity={"warn": 2}, labels={"region": "emea"}, summary="{subject}: {value:.0f}"),
        rule("off", "open_deals", severity={"warn": 0}, enabled=False),
    ]
    (evaluation,) = evaluate_rules(rules, company_warehouse, COMPANY, AT, kinds=TOY_KINDS)
    assert (evaluation.rule_id, evaluation.as_of, evaluation.error) == ("many", AT, None)
    (finding,) = evaluation.findings  # Bo's future deals are not open yet at AT
    assert (finding.subject.name, finding.severity, finding.value) == ("Ana", "warn", 3.0)
    assert finding.labels == {"region": "emea"}
    assert finding.summary == "Ana: 3"
    assert finding.evaluated_at == AT


def test_a_failing_rule_gives_a_failed_evaluation_and_the_others_still_run(company_warehouse: Engine) -> None:
    rules = [
        rule("boom", "failing"),
        rule("write", "writing"),
        rule("many", "open_deals", severity={"warn": 1}),
        rule("ghost", "no_such_kind"),
    ]
    evaluations = evaluate_rules(rules, company_warehouse, COMPANY, AT, kinds=TOY_KINDS)
    assert [e.rule_id for e in evaluations] == ["boom", "write", "many", "ghost"]
    boom, write, many, ghost = evaluations
    assert boom.error == "ZeroDivisionError: the toy kind always fails (boom at 2026-03-16)"
    assert write.error is not None
    assert "read" in write.error.lower()  # read-only transaction / readonly database
    assert many.error is None
    assert [f.subject.name for f in many.findings] == ["Ana"]
    assert ghost.error == "unknown kind 'no_such_kind'"
    with company_warehouse.connect() as conn:
        assert set(conn.execute(select(reps.c.name)).scalars()) == {"Ana", "Bo"}  # the write did not land


class _SnapshotProbe:
    """Counts deals, lets another connection commit a deal, counts again: both counts must agree."""

    name: ClassVar[str] = "probe"
    Params: ClassVar[type[BaseModel]] = BaseModel

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.counts: list[int] = []

    def evaluate(self, rule: Rule, warehouse: Warehouse, now: datetime) -> Evaluation:
        count = select(func.count()).select_from(opportunities)
        self.counts.append(warehouse.conn.execute(count).scalar_one())
        with self.engine.begin() as other:
            other.execute(insert(opportunities).values(_new_deal(f"new-{rule.id}")))
        self.counts.append(warehouse.conn.execute(count).scalar_one())
        return Evaluation(rule.id, self.name, now)


def test_every_rule_of_a_check_reads_the_same_snapshot(company_warehouse: Engine) -> None:
    probe = _SnapshotProbe(company_warehouse)
    evaluate_rules([rule("p1", "probe"), rule("p2", "probe")], company_warehouse, COMPANY, AT, kinds={"probe": probe})
    assert probe.counts == [7, 7, 7, 7]  # two deals committed meanwhile, seen by none of the reads
    with company_warehouse.connect() as conn:
        assert conn.execute(select(func.count()).select_from(opportunities)).scalar_one() == 9


def test_no_enabled_rule_reads_nothing_and_a_naive_instant_is_refused(warehouse: Engine) -> None:
    assert evaluate_rules([rule("off", "failing", enabled=False)], warehouse, COMPANY, AT, kinds=TOY_KINDS) == []
    with pytest.raises(ValueError, match="connections must be at least 1"):
        evaluate_rules([rule("x", "failing")], warehouse, COMPANY, AT, kinds=TOY_KINDS, connections=0)
    with pytest.raises(ValueError, match="aware datetime"):
        evaluate_rules([rule("x", "failing")], warehouse, COMPANY, datetime(2026, 1, 1), kinds=TOY_KINDS)  # noqa: DTZ001


class _SharedProbe:
    """Asks for one shared aggregate per evaluation and records how often it was computed."""

    name: ClassVar[str] = "shared"
    Params: ClassVar[type[BaseModel]] = BaseModel

    def __init__(self, together: int = 1) -> None:
        self.computed = 0
        self.seen: list[int] = []
        self.jit: list[str] = []
        self.together = threading.Barrier(together, timeout=10)

    def _compute(self) -> int:
        self.computed += 1
        time.sleep(0.05)  # the rules asking at the same time find it being computed
        return self.computed

    def evaluate(self, rule: Rule, warehouse: Warehouse, now: datetime) -> Evaluation:
        if self.computed == 0:
            self.together.wait()  # the first check's rules ask at the same moment
        self.seen.append(warehouse.shared(("probe", now), self._compute))
        if warehouse.conn.dialect.name == "postgresql":
            self.jit.append(warehouse.conn.exec_driver_sql("SHOW jit").scalar_one())
        return Evaluation(rule.id, self.name, now)


def test_a_shared_aggregate_is_computed_once_per_check_and_again_in_the_next(warehouse: Engine) -> None:
    probe = _SharedProbe(together=3)
    rules = [rule("a", "shared"), rule("b", "shared"), rule("c", "shared")]
    evaluate_rules(rules, warehouse, COMPANY, AT, kinds={"shared": probe}, connections=3)
    evaluate_rules(rules[:1], warehouse, COMPANY, AT, kinds={"shared": probe})
    assert probe.seen == [1, 1, 1, 2]  # asked on three connections at once; a later check computes anew


class _FailingShared(_SharedProbe):
    def _compute(self) -> int:
        super()._compute()
        raise ZeroDivisionError("no deals to divide by")


def test_a_shared_aggregate_that_fails_fails_each_rule_that_asks_and_is_tried_once(warehouse: Engine) -> None:
    probe = _FailingShared(together=2)
    rules = [rule("a", "shared"), rule("b", "shared")]
    evaluations = evaluate_rules(rules, warehouse, COMPANY, AT, kinds={"shared": probe}, connections=2)
    assert [e.error for e in evaluations] == ["ZeroDivisionError: no deals to divide by"] * 2
    assert probe.computed == 1


def test_postgresql_checks_run_without_jit_and_leave_the_session_as_it_was(warehouse: Engine) -> None:
    if warehouse.dialect.name != "postgresql":
        pytest.skip("JIT is a PostgreSQL setting")
    probe = _SharedProbe()
    with warehouse.connect() as conn:
        before = conn.exec_driver_sql("SHOW jit").scalar_one()
    evaluate_rules([rule("a", "shared"), rule("b", "shared")], warehouse, COMPANY, AT, kinds={"shared": probe})
    assert probe.jit == ["off", "off"]
    with warehouse.connect() as conn:
        assert conn.exec_driver_sql("SHOW jit").scalar_one() == before


class _ConnectionProbe:
    """Waits until every rule of the check has started (they run at once, or the wait times out) and
    counts the deals its connection sees."""

    name: ClassVar[str] = "connection"
    Params: ClassVar[type[BaseModel]] = BaseModel

    def __init__(self, together: int) -> None:
        self.together = threading.Barrier(together, timeout=10)
        self.seen: dict[int, int] = {}

    def evaluate(self, rule: Rule, warehouse: Warehouse, now: datetime) -> Evaluation:
        self.together.wait()
        count = warehouse.conn.execute(select(func.count()).select_from(opportunities)).scalar_one()
        self.seen[id(warehouse.conn)] = count
        return Evaluation(rule.id, self.name, now)


def _new_deal(name: str) -> dict:
    return {
        "id": f"salesforce:{name}",
        "source": "salesforce",
        "external_id": name,
        "pipeline": "default",
        "stage": "Prospecting",
        "is_closed": False,
        "is_won": False,
        "created_at": AT,
        "synced_at": AT,
    }


def test_the_rules_of_a_check_run_on_several_connections_at_once_in_one_snapshot(company_warehouse: Engine) -> None:
    """A sync commits just after the first connection's snapshot is taken: the others must not see it.

    On SQLite a commit is tried as each reader pins its snapshot (each must find the write lock taken); on
    PostgreSQL when the first transaction exports its snapshot (the others import it).
    """
    database = company_warehouse.url.database
    committed: list[str] = []

    def sync_commits_meanwhile(_conn, _cursor, statement: str, *_args) -> None:
        if company_warehouse.dialect.name == "sqlite" and "sqlite_master" in statement:
            writer = sqlite3.connect(database, timeout=0)
            try:
                with writer:
                    deal = _new_deal(f"mid-{len(committed)}")
                    writer.execute(
                        f"INSERT INTO opportunities ({', '.join(deal)}) VALUES ({', '.join('?' * len(deal))})",
                        [str(v) if isinstance(v, datetime) else v for v in deal.values()],
                    )
                committed.append("committed")
            except sqlite3.OperationalError as exc:
                committed.append(str(exc))
            finally:
                writer.close()
        if company_warehouse.dialect.name != "postgresql" or "pg_export_snapshot" not in statement:
            return
        with company_warehouse.connect() as other:  # a connection of its own: the pool's are in the check
            other.execute(insert(opportunities).values(_new_deal("mid")))
            other.commit()
        committed.append("committed")

    probe = _ConnectionProbe(3)
    event.listen(company_warehouse, "after_cursor_execute", sync_commits_meanwhile)
    try:
        evaluate_rules([rule(f"r{i}", "connection") for i in range(3)], company_warehouse, COMPANY, AT,
                       kinds={"connection": probe}, connections=3)  # fmt: skip
    finally:
        event.remove(company_warehouse, "after_cursor_execute", sync_commits_meanwhile)
    assert len(probe.seen) == 3  # three connections, all at once (the barrier waited for all three rules)
    assert set(probe.seen.values()) == {7}
    if company_warehouse.dialect.name == "sqlite":
        assert committed == ["database is locked"] * 3
    else:
        assert committed == ["committed"]


def test_a_sqlite_check_runs_on_one_connection_while_a_sync_writes(company_warehouse: Engine) -> None:
    if company_warehouse.dialect.name != "sqlite":
        pytest.skip("PostgreSQL readers never wait for a writer")
    writer = sqlite3.connect(company_warehouse.url.database, timeout=0)
    try:
        writer.execute("BEGIN IMMEDIATE")
        probe = _ConnectionProbe(1)
        evaluations = evaluate_rules([rule("a", "connection"), rule("b", "connection")], company_warehouse,
                                     COMPANY, AT, kinds={"connection": probe}, connections=2)  # fmt: skip
    finally:
        writer.rollback()
        writer.close()
    assert [e.error for e in evaluations] == [None, None]
    assert list(probe.seen.values()) == [7]  # both rules, one after the other, on one connection


def test_an_in_memory_warehouse_is_checked_on_its_one_connection() -> None:
    """Each connection to ``sqlite://`` is a database of its own: a second one would find no tables."""
    engine = open_warehouse("sqlite://")
    try:
        with engine.begin() as conn:
            write_data(conn, DATA, AT, COMPANY)
        rules = [rule("a", "open_deals", severity={"warn": 1}), rule("b", "open_deals", severity={"warn": 1})]
        evaluations = evaluate_rules(rules, engine, COMPANY, AT, kinds=TOY_KINDS)
    finally:
        engine.dispose()
    assert [(e.error, [f.subject.name for f in e.findings]) for e in evaluations] == [(None, ["Ana"])] * 2


class _Crash(BaseException):
    """Not an Exception: what a rule's isolation does not catch (a lost process, an interrupt)."""


class _CrashProbe:
    """``crash`` rules end the worker; ``count`` rules wait for the crash, then take their time."""

    name: ClassVar[str] = "crash"
    Params: ClassVar[type[BaseModel]] = BaseModel

    def __init__(self) -> None:
        self.crashed = threading.Event()
        self.counted: list[str] = []

    def evaluate(self, rule: Rule, _warehouse: Warehouse, now: datetime) -> Evaluation:
        if rule.id == "crash":
            self.crashed.set()
            raise _Crash
        self.crashed.wait(timeout=10)
        time.sleep(0.2)  # the crashed worker has stopped the check meanwhile
        self.counted.append(rule.id)
        return Evaluation(rule.id, self.name, now)


def test_a_worker_that_dies_outside_a_rule_stops_the_check(company_warehouse: Engine) -> None:
    probe = _CrashProbe()
    # The first connection's worker takes count0 and waits; the second's crashes, and only its own stop
    # ends the first's loop (the caller waits on the first worker's result).
    rules = [rule("count0", "crash"), rule("crash", "crash"), *(rule(f"count{i}", "crash") for i in range(1, 5))]
    with pytest.raises(_Crash):
        evaluate_rules(rules, company_warehouse, COMPANY, AT, kinds={"crash": probe}, connections=2)
    assert len(probe.counted) <= 1  # the rule already running on the other connection, no further one
