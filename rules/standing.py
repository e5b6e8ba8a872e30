"""Where every rep and team stands against quota: the digest's table and chart.

Same numbers as the ``quota_attainment`` and ``pipeline_coverage`` rules (one measurement,
:mod:`rules.attainment`), with their default settings, so the digest never contradicts an alert.
"""

from __future__ import annotations

from datetime import datetime

from rules.attainment import Measure, MeasureParams, measure_period
from rules.findings import Standing, StandingRow, Subject
from rules.model import Scope, Warehouse
from rules.periods import PeriodKind, period_of


def _row(subject: Subject, m: Measure) -> StandingRow:
    low_high = m.projected_interval()
    return StandingRow(
        subject=subject,
        quota=m.quota,
        won=round(m.won, 2),
        deals_won=m.deals_won,
        attainment=m.attainment,
        pace=m.pace,
        projected=m.share_of_target(m.projected),
        coverage=(m.pipeline.amount / m.remaining) if m.remaining > 0 else None,
        projected_low=m.share_of_target(low_high[0]),
        projected_high=m.share_of_target(low_high[1]),
        weighted_coverage=(m.pipeline.weighted / m.remaining) if m.remaining > 0 else None,
    )


def standing(warehouse: Warehouse, now: datetime, period: PeriodKind = "quarter") -> Standing:
    """Every active rep (with or without quota) and every team, sorted by team then name."""
    p = period_of(period, now, warehouse.company)
    measured = measure_period(warehouse, p, now, Scope(), MeasureParams(period=period))
    reps = sorted(
        (
            _row(Subject("rep", rep.id, rep.name, rep.team), m)
            for rep, m in measured.reps.values()
            if m.quota or m.won or m.pipeline.count
        ),
        key=lambda row: (row.subject.team or "", row.subject.name),
    )
    teams = sorted(
        (_row(Subject("team", team_id, name, name), m) for team_id, (name, m) in measured.teams.items()),
        key=lambda row: row.subject.name,
    )
    return Standing(
        as_of=now,
        period=period,
        period_start=p.start,
        period_end=p.end,
        elapsed=measured.elapsed,
        currency=warehouse.company.reporting_currency,
        reps=tuple(reps),
        teams=tuple(teams),
    )
