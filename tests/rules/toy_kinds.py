"""Tiny rule kinds for testing the engine (loader, check, rule tests, backtest) without the real kinds.

``open_deals`` counts each rep's open deals as of the instant (SQL aggregate, as real kinds do)
and fires when the count reaches the rule's ``severity`` tiers; ``failing`` always raises;
``writing`` tries to change the warehouse.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict
from sqlalchemy import and_, func, or_, select, update

from models.tables import opportunities, reps
from rules.findings import Evaluation, Finding, Note, Subject
from rules.model import Rule, Warehouse
from rules.names import NameOf


class OpenDealsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_amount: float = 0.0
    stages: tuple[Annotated[str, NameOf("stage")], ...] = ()
    note_reps_without_deals: bool = False


class OpenDeals:
    name: ClassVar[str] = "open_deals"
    Params: ClassVar[type[BaseModel]] = OpenDealsParams

    def evaluate(self, rule: Rule, warehouse: Warehouse, now: datetime) -> Evaluation:
        params = OpenDealsParams.model_validate(rule.params)
        o, r = opportunities, reps
        is_open = and_(
            o.c.deleted_at.is_(None),
            o.c.created_at <= now,
            or_(o.c.closed_at.is_(None), o.c.closed_at > now),
            func.coalesce(o.c.amount_reporting, 0) >= params.min_amount,
        )
        if params.stages:
            is_open = and_(is_open, o.c.stage.in_(params.stages))
        counts = (
            select(r.c.id, r.c.name, r.c.team, func.count(o.c.id).label("n"))
            .select_from(r.outerjoin(o, and_(o.c.owner_id == r.c.id, is_open)))
            .where(r.c.deleted_at.is_(None))
            .group_by(r.c.id, r.c.name, r.c.team)
            .order_by(r.c.name)
        )
        if rule.scope.teams:
            counts = counts.where(r.c.team.in_(rule.scope.teams))
        findings: list[Finding] = []
        notes: list[Note] = []
        for rep_id, name, team, n in warehouse.conn.execute(counts):
            subject = Subject("rep", rep_id, name, team)
            if n == 0 and params.note_reps_without_deals:
                notes.append(Note(rule.id, subject, "no open deals"))
            severity = None
            if rule.severity.critical is not None and n >= rule.severity.critical:
                severity = "critical"
            elif rule.severity.warn is not None and n >= rule.severity.warn:
                severity = "warn"
            if severity:
                limit = rule.severity.warn if rule.severity.warn is not None else rule.severity.critical
                findings.append(
                    Finding(
                        rule.id,
                        self.name,
                        subject,
                        severity,
                        float(n),
                        float(limit),
                        int(n),
                        "count",
                        f"{name} has {n} open deals (limit {limit:g}).",
                    )
                )
        return Evaluation(rule.id, self.name, now, tuple(findings), tuple(notes))


class _NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Failing:
    name: ClassVar[str] = "failing"
    Params: ClassVar[type[BaseModel]] = _NoParams

    def evaluate(self, rule: Rule, warehouse: Warehouse, now: datetime) -> Evaluation:
        warehouse.conn.execute(select(func.count()).select_from(opportunities))
        raise ZeroDivisionError(f"the toy kind always fails ({rule.id} at {now:%Y-%m-%d})")


class Writing:
    name: ClassVar[str] = "writing"
    Params: ClassVar[type[BaseModel]] = _NoParams

    def evaluate(self, rule: Rule, warehouse: Warehouse, now: datetime) -> Evaluation:
        warehouse.conn.execute(update(reps).values(name="overwritten"))
        return Evaluation(rule.id, self.name, now)


TOY_KINDS = {k.name: k for k in (OpenDeals(), Failing(), Writing())}
