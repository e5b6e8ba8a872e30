"""Evaluate rules against the warehouse as of one instant: the findings, nothing sent.

All rules of one check read one consistent snapshot (one read-only transaction), so a sync
committing half-way through cannot make two rules disagree about the same deals. A rule whose
evaluator fails yields a failed :class:`Evaluation` (its ``error`` set) and the others still
run: one broken rule must not silence the rest.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Connection, Engine

from models.settings import CompanySettings
from rules.findings import Evaluation, Finding
from rules.kinds import KINDS
from rules.model import Kind, Rule, Warehouse
from rules.summary import render_summary

log = logging.getLogger(__name__)


def evaluate_rules(
    rules: Sequence[Rule],
    engine: Engine,
    company: CompanySettings,
    now: datetime,
    *,
    kinds: Mapping[str, Kind] = KINDS,
) -> list[Evaluation]:
    """One Evaluation per enabled rule, in the given order, all from one snapshot as of ``now``."""
    if now.tzinfo is None:
        raise ValueError("evaluate_rules needs an aware datetime (UTC or with an offset)")
    enabled = [rule for rule in rules if rule.enabled]
    if not enabled:
        return []
    with engine.connect() as conn, _snapshot(conn):
        warehouse = Warehouse(conn, company)
        return [_evaluate(rule, warehouse, now, kinds) for rule in enabled]


@contextmanager
def _snapshot(conn: Connection) -> Iterator[None]:
    """A read-only transaction whose reads all see the same committed state; always rolled back."""
    if conn.dialect.name == "postgresql":
        conn.execution_options(isolation_level="REPEATABLE READ")
        transaction = conn.begin()
        try:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            # JIT compiles the CASE-heavy plans of rules for longer than they run: 1-3 s per query
            # at 100k deals, half of the pack's time (measured, bench/rules_bench.py). Off for this
            # transaction only.
            conn.exec_driver_sql("SET LOCAL jit = off")
            yield
        finally:
            transaction.rollback()
        return
    # SQLite: the driver opens transactions only for writes; BEGIN pins the WAL snapshot at the
    # first read, and query_only makes a stray write fail instead of changing the warehouse.
    transaction = conn.begin()
    try:
        conn.exec_driver_sql("BEGIN")
        conn.exec_driver_sql("PRAGMA query_only = ON")
        try:
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
