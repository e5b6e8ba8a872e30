"""Evaluate rules against the warehouse as of one instant: the findings, nothing sent.

All rules of one check read one consistent snapshot (read-only transactions on one or more
connections, all seeing the same committed state), so a sync committing half-way through cannot
make two rules disagree about the same deals. A rule whose
evaluator fails yields a failed :class:`Evaluation` (its ``error`` set) and the others still
run: one broken rule must not silence the rest.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, nullcontext
from datetime import datetime

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from models.database import SQLITE_BUSY_TIMEOUT_MS
from models.settings import CompanySettings
from rules.findings import Evaluation, Finding
from rules.kinds import KINDS
from rules.model import Kind, Memo, Rule, Warehouse
from rules.summary import render_summary

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 4  # a check's connections at most: ten rules keep no more than a few busy


def evaluate_rules(
    rules: Sequence[Rule],
    engine: Engine,
    company: CompanySettings,
    now: datetime,
    *,
    kinds: Mapping[str, Kind] = KINDS,
    connections: int | None = None,
) -> list[Evaluation]:
    """One Evaluation per enabled rule, in the given order, all from one snapshot as of ``now``.

    The rules run on up to ``connections`` connections at once (default: the machine's cores, at most
    four), each in a read transaction of the same snapshot (:func:`_snapshots`). A rule's queries run on
    one connection one after the other, and a check of ten rules on one connection kept the database's
    other cores idle: on PostgreSQL most of a rule's plans cannot use parallel workers (the as-of look-ups
    are correlated subqueries), and SQLite never does.
    """
    if now.tzinfo is None:
        raise ValueError("evaluate_rules needs an aware datetime (UTC or with an offset)")
    enabled = [rule for rule in rules if rule.enabled]
    if not enabled:
        return []
    if connections is not None and connections < 1:
        raise ValueError(f"connections must be at least 1, not {connections}")
    wanted = min(len(enabled), connections or _default_connections(engine))
    memo = Memo()
    with _snapshots(engine, wanted) as conns:
        warehouses = [Warehouse(conn, company, memo) for conn in conns]
        if len(warehouses) == 1:
            return [_evaluate(rule, warehouses[0], now, kinds) for rule in enabled]
        queue = iter(list(enumerate(enabled)))
        taking = threading.Lock()
        stop = threading.Event()  # a worker died outside a rule (its connection lost), or the caller was interrupted
        out: list[Evaluation | None] = [None] * len(enabled)

        def work(warehouse: Warehouse) -> None:
            try:
                while not stop.is_set():
                    with taking:
                        index, rule = next(queue, (None, None))
                    if rule is None:
                        return
                    out[index] = _evaluate(rule, warehouse, now, kinds)
            except BaseException:
                stop.set()
                raise

        with ThreadPoolExecutor(len(warehouses), thread_name_prefix="check") as pool:
            workers = [pool.submit(work, warehouse) for warehouse in warehouses]
            try:
                for worker in workers:
                    worker.result()
            finally:
                stop.set()
        return [evaluation for evaluation in out if evaluation is not None]


def _default_connections(engine: Engine) -> int:
    """One connection per core this process may run on, at most ``MAX_CONNECTIONS``; one for an in-memory
    SQLite database (each connection would open a database of its own)."""
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, MAX_CONNECTIONS)


@contextmanager
def _snapshots(engine: Engine, wanted: int) -> Iterator[list[Connection]]:
    """Up to ``wanted`` connections in read-only transactions that all see the same committed state.

    PostgreSQL: the first transaction exports its snapshot and the others import it
    (``SET TRANSACTION SNAPSHOT``). SQLite pins a reader's snapshot at its first read; a sync committing
    between two of them would split the check, so the readers start while a further connection holds the
    write lock (``BEGIN IMMEDIATE``: nobody can commit meanwhile), released once all have read. When that
    lock is not free at once (a sync is writing), the check runs on one connection rather than wait.
    """
    with ExitStack() as stack:
        first = stack.enter_context(engine.connect())
        conns = [first]
        if engine.dialect.name == "postgresql":
            stack.enter_context(_postgresql_snapshot(first))
            if wanted > 1:
                exported = first.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
                for _ in range(wanted - 1):
                    conn = stack.enter_context(engine.connect())
                    stack.enter_context(_postgresql_snapshot(conn, exported))
                    conns.append(conn)
            yield conns
            return
        with engine.connect() if wanted > 1 else nullcontext() as holder:
            if holder is not None:
                if _sqlite_write_lock(holder):
                    conns += [stack.enter_context(engine.connect()) for _ in range(wanted - 1)]
                else:
                    log.debug("a sync holds the warehouse's write lock: this check reads on one connection")
            for conn in conns:
                stack.enter_context(_sqlite_snapshot(conn))
        # The holder is closed: its transaction rolled back, the write lock released.
        yield conns


@contextmanager
def _postgresql_snapshot(conn: Connection, snapshot: str | None = None) -> Iterator[None]:
    """A read-only REPEATABLE READ transaction (of ``snapshot``, exported by another); always rolled back."""
    conn.execution_options(isolation_level="REPEATABLE READ")
    transaction = conn.begin()
    try:
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        if snapshot is not None:
            conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        # JIT compiles the CASE-heavy plans of rules for longer than they run: 1-3 s per query
        # at 100k deals, half of the pack's time (measured, bench/rules_bench.py). Off for this
        # transaction only.
        conn.exec_driver_sql("SET LOCAL jit = off")
        yield
    finally:
        transaction.rollback()


def _sqlite_write_lock(conn: Connection) -> bool:
    """Take the write lock (``BEGIN IMMEDIATE``) until ``conn`` closes; False at once if another holds it."""
    conn.begin()
    conn.exec_driver_sql("PRAGMA busy_timeout = 0")
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except OperationalError:  # "database is locked": a sync is writing (or the file is read-only)
        return False
    finally:
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    return True


@contextmanager
def _sqlite_snapshot(conn: Connection) -> Iterator[None]:
    """A read transaction pinned now (its first read), where a stray write fails; always rolled back.

    The driver opens transactions only for writes: ``BEGIN`` makes the reads one transaction, and
    ``query_only`` makes a write fail instead of changing the warehouse.
    """
    transaction = conn.begin()
    try:
        conn.exec_driver_sql("BEGIN")
        conn.exec_driver_sql("PRAGMA query_only = ON")
        try:
            conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar_one()
            yield
        finally:
            conn.exec_driver_sql("PRAGMA query_only = OFF")
    finally:
        transaction.rollback()


def _evaluate(rule: Rule, warehouse: Warehouse, now: datetime, kinds: Mapping[str, Kind]) -> Evaluation:
    kind = kinds.get(rule.kind)
    if kind is None:
        return Evaluation(rule.id, rule.kind, now, error=f"unknown kind '{rule.kind}'")
    savepoint = warehouse.conn.begin_nested()
    try:
        evaluation = kind.evaluate(rule, warehouse, now)
    except Exception as exc:  # one failing rule must not stop the others; logged with its trace
        savepoint.rollback()
        log.exception("rule=%s kind=%s evaluation failed", rule.id, rule.kind)
        reason = (str(exc).strip().splitlines() or [""])[0][:300]
        return Evaluation(rule.id, rule.kind, now, error=f"{type(exc).__name__}: {reason}")
    savepoint.commit()
    return dataclasses.replace(
        evaluation, as_of=now, findings=tuple(_finish(rule, finding, now) for finding in evaluation.findings)
    )


def _finish(rule: Rule, finding: Finding, now: datetime) -> Finding:
    """Stamp what the rule file adds to every finding: its labels (they win: routing), the summary."""
    finding = dataclasses.replace(finding, evaluated_at=now, labels={**finding.labels, **rule.labels})
    if rule.summary is not None:
        finding = dataclasses.replace(finding, summary=render_summary(rule.summary, finding))
    return finding
