"""What every kind does with its numbers: grade them against the rule's tiers, dress a finding.

Kinds differ in what they measure; they share how a measurement becomes a finding: the
severity from the rule's ``warn`` / ``critical`` tiers (or the kind's defaults) in the
kind's direction, the labels (rule labels plus the team), and the evaluation instant.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import binomtest

from rules.findings import Finding, SampleRecord, Severity, Subject, Unit
from rules.model import Rule, SeverityTiers

Direction = Literal["above", "below"]


class KindParams(BaseModel):
    """Params every kind takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_samples: int = Field(5, ge=0, le=50)  # worst records named in a finding


def tiers(rule: Rule, default: SeverityTiers) -> SeverityTiers:
    """The rule's tiers, or the kind's when the rule sets none."""
    given = rule.severity
    return given if given.warn is not None or given.critical is not None else default


def grade(value: float, tiers: SeverityTiers, direction: Direction) -> Severity | None:
    """The severity ``value`` reaches (``above``: at or over a tier; ``below``: at or under), or None."""

    def reaches(threshold: float | None) -> bool:
        if threshold is None:
            return False
        return value >= threshold if direction == "above" else value <= threshold

    if reaches(tiers.critical):
        return "critical"
    if reaches(tiers.warn):
        return "warn"
    return None


def significant(
    value: float, tiers: SeverityTiers, direction: Direction, p_value: float, alpha: float
) -> Severity | None:
    """The severity ``value`` reaches, when the test behind it is significant (``p_value < alpha``); else None.

    A tier alone names half of any noisy group on a bad day; the test alone flags differences too
    small to act on. A statistical kind fires only when both agree.
    """
    severity = grade(value, tiers, direction)
    return severity if severity is not None and p_value < alpha else None


def binomial_p(k: int, n: int, p0: float, alternative: Literal["less", "greater"]) -> float:
    """One-sided exact binomial test P(X <= k) or P(X >= k), X ~ Bin(n, p0) (scipy.stats.binomtest).

    ``p0`` is kept inside (0, 1): a baseline of exactly 0 or 1 (every lead breached, none
    qualified) would make every other count impossible rather than unlikely.
    """
    return float(binomtest(k, n, min(max(p0, 1e-9), 1 - 1e-9), alternative=alternative).pvalue)


def make_finding(
    rule: Rule,
    now: datetime,
    *,
    subject: Subject,
    severity: Severity,
    value: float,
    baseline: float,
    sample_size: int,
    unit: Unit,
    explanation: str,
    samples: tuple[SampleRecord, ...] = (),
    details: Mapping[str, Any] | None = None,
) -> Finding:
    labels = dict(rule.labels)
    if subject.team:
        labels.setdefault("team", subject.team)
    return Finding(
        rule_id=rule.id,
        kind=rule.kind,
        subject=subject,
        severity=severity,
        value=value,
        baseline=baseline,
        sample_size=sample_size,
        unit=unit,
        explanation=explanation,
        labels=labels,
        samples=samples,
        details=dict(details or {}),
        evaluated_at=now,
    )


def share_finding(
    rule: Rule,
    now: datetime,
    *,
    subject: Subject,
    severity: Severity,
    share: float,
    baseline: float,
    sample_size: int,
    explanation: str,
    samples: tuple[SampleRecord, ...] = (),
    details: Mapping[str, Any] | None = None,
) -> Finding:
    """A finding whose value is a share (of leads, deals, exits) against the share expected."""
    return make_finding(
        rule,
        now,
        subject=subject,
        severity=severity,
        value=round(share, 4),
        baseline=round(baseline, 4),
        sample_size=sample_size,
        unit="share",
        explanation=explanation,
        samples=samples,
        details=details,
    )


def deal_sample(row: Mapping[str, Any]) -> SampleRecord:
    """A sample from a query row labelled id, name, amount_reporting, owner, stage, days, crm_url."""
    amount, days = row["amount_reporting"], row["days"]
    return SampleRecord(
        id=row["id"],
        name=row["name"] or row["id"],
        amount=None if amount is None else float(amount),
        owner=row["owner"],
        stage=row["stage"],
        days=None if days is None else round(float(days), 1),
        url=row["crm_url"],
    )


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else (many or word + 's')}"
