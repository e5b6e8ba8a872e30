"""What a rule check hands to the alerting step: findings and "not evaluated" notes.

This is the contract between ``rules/`` (which produces these) and ``alerts/`` (which turns
them into alert state and Slack messages). Plain frozen dataclasses: they carry numbers and
names, never a database handle, so alerting and rendering can be tested without a warehouse.
Fields may be added with defaults; none may be renamed without changing both sides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

Severity = Literal["warn", "critical"]
SubjectType = Literal["rep", "team", "stage", "pipeline", "lead_source", "company"]
# How to read ``value`` and ``baseline``: a share of 1.0 is 100 %; money is in the reporting currency.
Unit = Literal["share", "ratio", "money", "days", "count", "zscore"]


@dataclass(frozen=True)
class Subject:
    """Who or what a finding is about: a rep, a team, a funnel stage..."""

    type: SubjectType
    id: str  # warehouse id: reps.id, reps.team_id, stages.id, a lead source, "company"
    name: str  # display name, CRM text (alerts escape it)
    team: str | None = None  # team name, for routing and grouping


@dataclass(frozen=True)
class SampleRecord:
    """One of the worst cases behind a finding, with a link back to the CRM."""

    id: str  # warehouse id (opportunities.id, leads.id)
    name: str
    amount: float | None = None  # reporting currency
    owner: str | None = None
    stage: str | None = None
    days: float | None = None  # days in stage, days without activity, days late...
    url: str | None = None
    note: str | None = None  # why this record was picked, when the kind can flag it for several reasons


@dataclass(frozen=True)
class Finding:
    """One subject that a rule judged worth telling a human about.

    ``value`` is what was measured, ``baseline`` what it was compared with, ``sample_size`` how
    many records the measurement rests on; ``explanation`` says all three in one plain sentence.
    """

    rule_id: str
    kind: str
    subject: Subject
    severity: Severity
    value: float
    baseline: float
    sample_size: int
    unit: Unit
    explanation: str
    labels: Mapping[str, str] = field(default_factory=dict)
    samples: tuple[SampleRecord, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)  # further numbers (interval, pace, counts)
    summary: str | None = None  # the rule's ``summary`` template filled in, when it has one
    evaluated_at: datetime | None = None  # the as-of instant of the evaluation


@dataclass(frozen=True)
class Note:
    """A subject a rule could not judge (a rep without quota, a stage without history)."""

    rule_id: str
    subject: Subject
    reason: str


@dataclass(frozen=True)
class Evaluation:
    """The outcome of one rule at one instant: every finding and note, nothing sent."""

    rule_id: str
    kind: str
    as_of: datetime
    findings: tuple[Finding, ...] = ()
    notes: tuple[Note, ...] = ()
    # Set when the evaluator failed: the rule judged nothing (its findings are unknown, not
    # absent), so alerting must neither raise nor resolve anything for it.
    error: str | None = None


@dataclass(frozen=True)
class StandingRow:
    """Where one rep or team stands against quota in a period: the digest's table and chart."""

    subject: Subject
    quota: float | None  # reporting currency; None: no quota for the period
    won: float
    deals_won: int
    attainment: float | None  # won / quota
    pace: float | None  # attainment / share of the period elapsed (1.0 = on pace)
    projected: float | None  # projected attainment at period end
    coverage: float | None  # open pipeline closing in the period / remaining quota
    projected_low: float | None = None  # 80 % interval of the projected attainment
    projected_high: float | None = None
    weighted_coverage: float | None = None  # win-rate-weighted open pipeline / remaining quota


@dataclass(frozen=True)
class Standing:
    """Every rep and team of the company against quota, as of one instant."""

    as_of: datetime
    period: str  # month | quarter | year
    period_start: date
    period_end: date  # inclusive
    elapsed: float  # share of the period elapsed, 0..1
    currency: str
    reps: tuple[StandingRow, ...] = ()
    teams: tuple[StandingRow, ...] = ()
