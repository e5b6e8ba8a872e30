"""Whether to notify about one alert, and why: a pure function, modelled on Alertmanager.

Alertmanager's dedup stage (``needsUpdate`` in notify/dedup_stage.go) decides from the last
notification and the current alert alone; so does :func:`decide`. It reads no clock and no
database, so every branch is tested table-driven and by property tests, and ``check --dry-run``
can show the same reasons the real run acts on.

States: ``pending`` (found, but fewer evaluations in a row than the rule's ``for``), ``firing``,
``resolved``; ``None`` means no alert (never found, or pending and gone before it fired).
A muted alert (silence, mute window, inhibition) changes state like any other; only the
notification is held back, and it goes out once the mute ends (the alert is then still due).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from rules.findings import Severity

State = Literal["pending", "firing", "resolved"]
Notify = Literal["firing", "repeat", "severity", "resolved"]


@dataclass(frozen=True)
class AlertState:
    """What is remembered about one (rule, subject) between evaluations."""

    state: State
    severity: Severity
    consecutive: int  # evaluations in a row that found it
    first_seen_at: datetime  # start of this episode
    last_seen_at: datetime  # last evaluation that found it
    firing_since: datetime | None = None
    resolved_at: datetime | None = None
    last_notified_at: datetime | None = None  # of this episode; None: not announced yet
    notified_severity: Severity | None = None


@dataclass(frozen=True)
class Timing:
    """The rule's alerting settings that the decision needs."""

    for_: int = 1
    repeat_interval: timedelta = timedelta(days=1)
    keep_firing_for: timedelta = timedelta(0)
    send_resolved: bool = False


@dataclass(frozen=True)
class Decision:
    """The alert's next state, the notification to send (None: none) and the reason, in words."""

    state: AlertState | None
    notify: Notify | None
    reason: str
    muted_by: str | None = None  # the mute that held a notification back


def decide(
    prior: AlertState | None,
    severity: Severity | None,
    timing: Timing,
    now: datetime,
    muted_by: str | None = None,
) -> Decision:
    """The next state of one alert given this evaluation (``severity`` None: not found).

    ``muted_by`` names a silence, mute window or inhibiting alert that applies now; the state
    moves as usual but nothing is sent.
    """
    if severity is None:
        state, notify, reason = _absent(prior, timing, now)
    else:
        state, notify, reason = _present(prior, severity, timing, now)
    if notify is not None and muted_by is not None:
        return Decision(state, None, f"{reason}; not sent: {muted_by}", muted_by)
    if notify is not None and state is not None:
        state = replace(state, last_notified_at=now, notified_severity=state.severity)
        if notify == "resolved":
            state = replace(state, notified_severity=None)
    return Decision(state, notify, reason)


def _present(
    prior: AlertState | None, severity: Severity, timing: Timing, now: datetime
) -> tuple[AlertState, Notify | None, str]:
    if prior is None or prior.state == "resolved":
        prior = AlertState("pending", severity, 0, now, now)
    if prior.state == "pending":
        seen = prior.consecutive + 1
        if seen < timing.for_:
            state = replace(prior, severity=severity, consecutive=seen, last_seen_at=now)
            return state, None, f"pending: found {seen} of {timing.for_} evaluations in a row"
        state = replace(prior, state="firing", severity=severity, consecutive=seen, last_seen_at=now, firing_since=now)
        held = f" (held {seen} evaluations)" if timing.for_ > 1 else ""
        return state, "firing", f"started firing{held}"
    state = replace(prior, severity=severity, consecutive=prior.consecutive + 1, last_seen_at=now)
    if prior.last_notified_at is None:
        return state, "firing", "firing and not announced yet"
    if prior.notified_severity is not None and severity != prior.notified_severity:
        return state, "severity", f"severity changed from {prior.notified_severity} to {severity}"
    due = prior.last_notified_at + timing.repeat_interval
    if now >= due:
        return state, "repeat", f"still firing; last notified {_ago(now - prior.last_notified_at)} ago"
    return state, None, f"still firing; next reminder after {due.isoformat(timespec='minutes')}"


def _absent(prior: AlertState | None, timing: Timing, now: datetime) -> tuple[AlertState | None, Notify | None, str]:
    if prior is None:
        return None, None, "not found"
    if prior.state == "pending":
        return None, None, "gone before it fired"
    if prior.state == "resolved":
        return prior, None, "still resolved"
    kept_until = prior.last_seen_at + timing.keep_firing_for
    if now < kept_until:
        return prior, None, f"not found, kept firing until {kept_until.isoformat(timespec='minutes')} (keep_firing_for)"
    state = replace(prior, state="resolved", consecutive=0, resolved_at=now)
    if not timing.send_resolved:
        return state, None, "resolved (the rule sends no resolution notices)"
    if prior.last_notified_at is None:
        return state, None, "resolved before it was announced"
    return state, "resolved", "resolved"


def _ago(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h"
