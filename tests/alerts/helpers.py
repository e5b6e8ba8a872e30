"""Findings, rules and settings for alerting tests (no evaluator needed: the contract is the input)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.outbox import Pacing
from alerts.slack import SlackTransport
from models.settings import Settings
from rules.findings import Evaluation, Finding, SampleRecord, Subject
from rules.model import Rule
from sandbox.slack import FakeSlack

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)  # a Monday
TOKEN = "xoxb-test-secret-token-123"


def rep(name: str, team: str = "EMEA", rep_id: str | None = None) -> Subject:
    return Subject("rep", rep_id or f"salesforce:{abs(hash(name)) % 10**9:09d}", name, team)


def finding(
    subject: Subject, rule_id: str = "pace", *, severity: str = "warn", value: float = 0.37, samples: int = 2
) -> Finding:
    return Finding(
        rule_id=rule_id,
        kind="quota_pace",
        subject=subject,
        severity=severity,  # type: ignore[arg-type]
        value=value,
        baseline=0.98,
        sample_size=12,
        unit="share",
        explanation=f"{subject.name} has won 37 % of quota at 67 % of the quarter; team median 98 % of pace",
        samples=tuple(
            SampleRecord(
                id=f"salesforce:006{i}",
                name=f"Deal {i} of {subject.name}",
                amount=41000.0,
                stage="Negotiation",
                days=23,
                url=f"https://example.my.salesforce.com/006{i}",
            )
            for i in range(samples)
        ),
    )


def rule(rule_id: str = "pace", **kw: Any) -> Rule:
    return Rule(id=rule_id, kind="quota_pace", description="Reps behind quota pace", **kw)


def evaluation(rule_id: str, findings: list[Finding], at: datetime) -> Evaluation:
    return Evaluation(rule_id, "quota_pace", at, tuple(findings))


def settings_for(fake: FakeSlack, **slack: Any) -> Settings:
    return Settings(
        slack={"base_url": fake.base_url + "/api/", "token": TOKEN, "post_interval_s": 0, "timeout_s": 2, **slack}
    )


def transport(settings: Settings) -> SlackTransport:
    return SlackTransport.from_settings(settings.slack)


def no_wait() -> Pacing:
    return Pacing(post_interval_s=0, retry_base_s=30, retry_max_s=600, sleep=lambda _s: None)


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> datetime:
        self.now += timedelta(**kw)
        return self.now
