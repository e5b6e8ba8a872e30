"""What ``alerts list``, ``silence list``, ``status`` and ``check`` print about alerts and the outbox.

Plain lines, one per item, so the output reads the same on a terminal, in a log and in a pipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from alerts.digest import OpenAlert
from alerts.outbox import FlushResult, outbox_status
from alerts.pipeline import ProcessResult
from alerts.silences import Silence, silenced_by
from models.tables import alerts, notification_alerts, notifications, rule_notes
from rules.findings import Subject


def age(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


@dataclass(frozen=True)
class AlertLine:
    id: int
    state: str
    severity: str
    rule_id: str
    subject: str
    team: str | None
    channel: str | None
    since: datetime
    last_notified_at: datetime | None
    last_notice: str | None  # kind and status of the latest notification about it
    silence: str | None


def list_alerts(
    engine: Engine, now: datetime, silences: Sequence[Silence], state: str | None = None
) -> list[AlertLine]:
    query = select(alerts).order_by(alerts.c.state, alerts.c.rule_id, alerts.c.subject_name)
    if state:
        query = query.where(alerts.c.state == state)
    lines = []
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        notices = _latest_notices(conn, [r.id for r in rows])
    for r in rows:
        subject = Subject(r.subject_type or "company", r.subject, r.subject_name or r.subject, r.team)
        since = r.firing_since if r.state == "firing" and r.firing_since else r.first_fired_at
        if r.state == "resolved" and r.resolved_at:
            since = r.resolved_at
        lines.append(
            AlertLine(
                r.id,
                r.state,
                r.severity,
                r.rule_id,
                subject.name,
                r.team,
                r.channel,
                since,
                r.last_notified_at,
                notices.get(r.id),
                silenced_by(silences, r.rule_id, subject, now),
            )
        )
    return lines


def _latest_notices(conn: Connection, alert_ids: list[int]) -> dict[int, str]:
    if not alert_ids:
        return {}
    rows = conn.execute(
        select(notification_alerts.c.alert_id, notifications.c.kind, notifications.c.status, notifications.c.id)
        .join(notifications, notifications.c.id == notification_alerts.c.notification_id)
        .where(notification_alerts.c.alert_id.in_(alert_ids))
        .order_by(notifications.c.id)
    ).all()
    return {r.alert_id: f"{r.kind} #{r.id} {r.status}" for r in rows}


def format_alerts(lines: Sequence[AlertLine], now: datetime) -> list[str]:
    if not lines:
        return ["(no alerts)"]
    out = [f"{'id':>5}  {'state':<8} {'sev':<8} {'for':>5}  {'rule':<24} {'subject':<28} {'notified':>8}  notice"]
    for a in lines:
        notified = age(now - a.last_notified_at) + " ago" if a.last_notified_at else "never"
        line = (
            f"{a.id:>5}  {a.state:<8} {a.severity:<8} {age(now - a.since):>5}  {a.rule_id[:24]:<24} "
            f"{a.subject[:28]:<28} {notified:>8}  {a.last_notice or '-'}"
        )
        if a.channel:
            line += f" -> {a.channel}"
        out.append(line)
        if a.silence:
            out.append(f"{'':>7}{a.silence}")
    return out


def format_silences(found: Sequence[Silence], now: datetime) -> list[str]:
    if not found:
        return ["(no active silences)"]
    out = []
    for s in found:
        status = "active" if s.active(now) else ("expired" if s.expired_at else "ended")
        out.append(
            f"#{s.id} {status}: rule {s.rule_id}, subject {s.subject or '(all)'}, until "
            f"{s.ends_at:%Y-%m-%d %H:%M} UTC, by {s.created_by}: {s.comment}"
        )
    return out


def alerting_document(engine: Engine, now: datetime, day_start: datetime) -> dict[str, Any]:
    """The alerting part of ``status``: the outbox (since ``day_start``) and the latest check's notes."""
    st = outbox_status(engine, now, day_start)
    with engine.connect() as conn:
        rows = conn.execute(
            select(rule_notes.c.rule_id, func.count(), func.max(rule_notes.c.as_of))
            .group_by(rule_notes.c.rule_id)
            .order_by(rule_notes.c.rule_id)
        ).all()
        samples = conn.execute(select(rule_notes).order_by(rule_notes.c.rule_id, rule_notes.c.id)).all()
    return {
        "outbox": {
            "pending": st.pending,
            "outcome_being_checked": st.unknown,
            "sent_today": st.sent_today,
            "waiting": [{"id": i, "channel": channel, "reason": reason} for i, channel, reason in st.waiting],
            "failed": [
                {"id": i, "channel": channel, "kind": kind, "reason": reason} for i, channel, kind, reason in st.failed
            ],
        },
        "not_evaluated": [
            {
                "rule_id": rule_id,
                "count": n,
                "as_of": as_of.isoformat(),
                "first": [f"{s.subject}: {s.reason}" for s in samples if s.rule_id == rule_id][:3],
            }
            for rule_id, n, as_of in rows
        ],
    }


def format_alerting(doc: dict[str, Any]) -> list[str]:
    """``alerting_document`` as the lines ``status`` prints."""
    box = doc["outbox"]
    out = ["", "outbox"]
    out += [
        f"  pending {box['pending']:,}, outcome being checked {box['outcome_being_checked']:,}, "
        f"sent today {box['sent_today']:,}"
    ]
    out += [f"  waiting #{w['id']} to {w['channel']}: {w['reason']}" for w in box["waiting"]]
    out += [f"  FAILED #{f['id']} ({f['kind']}) to {f['channel']}: {f['reason']}" for f in box["failed"]]
    if box["failed"]:
        out.append("  after fixing the cause: python service.py alerts retry [ID ...]")
    out += ["", "not evaluated (latest check)"]
    for note in doc["not_evaluated"]:
        first, n = note["first"], note["count"]
        more = f" (+{n - len(first)} more)" if n > len(first) else ""
        as_of = datetime.fromisoformat(note["as_of"])
        out.append(f"  {note['rule_id']}: {n} not evaluated as of {as_of:%Y-%m-%d %H:%M} UTC: {'; '.join(first)}{more}")
    if not doc["not_evaluated"]:
        out.append("  (none)")
    return out


def open_alerts(engine: Engine) -> list[OpenAlert]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(alerts.c.rule_id, alerts.c.subject_name, alerts.c.subject, alerts.c.severity, alerts.c.team)
            .where(alerts.c.state == "firing")
            .order_by(alerts.c.rule_id, alerts.c.subject_name)
        ).all()
    return [OpenAlert(r.rule_id, r.subject_name or r.subject, r.severity, r.team) for r in rows]


def format_check(result: ProcessResult, flushed: FlushResult | None) -> list[str]:
    """The lines ``check`` ends with: what changed, what was queued and sent."""
    changes: dict[str, int] = {}
    for o in result.outcomes:
        if o.decision.notify:
            changes[o.decision.notify] = changes.get(o.decision.notify, 0) + 1
    muted = sum(1 for o in result.outcomes if o.decision.muted_by)
    posts = [m for m in result.messages if m.kind != "update"]
    notices = ", ".join(f"{k} {v}" for k, v in sorted(changes.items())) or "none"
    held = f"; {muted} held back (silence, mute window, inhibition)" if muted else ""
    out = [f"alerts: {result.firing} firing; notifications {notices}{held}; {len(posts)} message(s) queued"]
    out += [
        f"  held back: {o.rule_id} / {o.subject.name}: {o.decision.reason}"
        for o in result.outcomes
        if o.decision.muted_by
    ]
    if flushed is not None:
        out.append(
            f"slack: sent {flushed.sent}, edited {flushed.updated}, found already posted {flushed.found_posted}, "
            f"failed {flushed.failed}, waiting {flushed.retrying + flushed.deferred}"
        )
        if flushed.stopped:
            out.append(f"slack: stopped: {flushed.stopped}")
        out += [f"slack: {e}" for e in flushed.errors]
    return out
