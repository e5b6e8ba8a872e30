"""From evaluations to alert state and outbox rows, in one transaction.

For every finding and every alert whose finding is gone, :func:`alerts.lifecycle.decide` says
what happens; this module applies it: alert rows, one outbox row per rule and channel for new
alerts (grouped: one message, not one per rep), one thread reply per announcing message and
kind for follow-ups, and an edit of the announcing message when its alerts resolve. Nothing is
sent here (``alerts.outbox.flush`` sends), so a crash after the commit loses nothing and a crash
before it changes nothing. ``dry_run`` rolls the transaction back and returns the messages.

An evaluation that failed (its ``error`` set) changes nothing: a rule whose query broke must not
resolve all its alerts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from alerts.blocks import Context, Message, View, announcement, follow_up, redact
from alerts.lifecycle import Decision, Timing, decide
from alerts.routing import family, inhibited_by, route
from alerts.silences import active_silences, in_mute_window, silenced_by
from alerts.state import finding_from_json, finding_json, fingerprint, state_of, state_values
from models.settings import Settings
from models.tables import alerts, notification_alerts, notifications, rule_notes
from rules.findings import Evaluation, Finding, Note, Subject
from rules.model import Rule


@dataclass(frozen=True)
class Outgoing:
    """A message ``process`` queued (or, in a dry run, would queue)."""

    channel: str
    kind: str  # firing | repeat | severity | resolved | update
    rule_id: str
    message: Message
    thread_of: int | None = None  # the outbox row of the message replied to / edited
    notification_id: int | None = None  # None in a dry run


@dataclass(frozen=True)
class Outcome:
    """What happened to one alert in this evaluation, and why."""

    rule_id: str
    subject: Subject
    decision: Decision


@dataclass
class ProcessResult:
    outcomes: list[Outcome] = field(default_factory=list)
    messages: list[Outgoing] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    failed_rules: list[tuple[str, str]] = field(default_factory=list)  # (rule id, error)

    @property
    def firing(self) -> int:
        return sum(1 for o in self.outcomes if o.decision.state is not None and o.decision.state.state == "firing")


@dataclass
class _Item:
    rule: Rule
    fp: str
    finding: Finding | None
    row: Any  # stored alert row or None


def process(
    evaluations: Sequence[Evaluation],
    rules: Mapping[str, Rule],
    engine: Engine,
    settings: Settings,
    now: datetime,
    *,
    dry_run: bool = False,
    queued_at: datetime | None = None,
) -> ProcessResult:
    """Apply the evaluations to alert state and queue the notifications they call for.

    ``now`` is the evaluation instant the lifecycle runs on (``check --as-of`` may set it in the
    past or future); ``queued_at`` (default ``now``) stamps the outbox rows, which the sender
    compares with the wall clock.
    """
    result = ProcessResult()
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            _process(conn, evaluations, rules, settings, now, queued_at or now, result)
        except BaseException:
            trans.rollback()
            raise
        if dry_run:
            trans.rollback()
        else:
            trans.commit()
    return result


def _process(
    conn: Connection,
    evaluations: Sequence[Evaluation],
    rules: Mapping[str, Rule],
    settings: Settings,
    now: datetime,
    queued_at: datetime,
    result: ProcessResult,
) -> None:
    good = []
    for ev in evaluations:
        if ev.error:
            result.failed_rules.append((ev.rule_id, ev.error))
        else:
            good.append(ev)
        result.notes += ev.notes
    if not good:
        return
    rule_ids = [ev.rule_id for ev in good]
    stored = {r.fingerprint: r for r in conn.execute(select(alerts).where(alerts.c.rule_id.in_(rule_ids)))}
    items: list[_Item] = []
    for ev in good:
        rule = rules[ev.rule_id]
        seen: dict[str, Finding] = {}
        for f in ev.findings:
            seen.setdefault(fingerprint(ev.rule_id, f.subject), f)
        items += [_Item(rule, fp, f, stored.get(fp)) for fp, f in seen.items()]
        items += [
            _Item(rule, fp, None, row)
            for fp, row in stored.items()
            if row.rule_id == ev.rule_id and fp not in seen and row.state in ("pending", "firing")
        ]
    # Team alerts first: a firing team alert holds back its reps' alerts of the same family.
    items.sort(key=lambda i: _subject(i).type != "team")
    firing_teams = _firing_teams(conn, {i.fp for i in items}) if settings.slack.inhibit_reps_by_team else None
    silences = active_silences(conn, now)
    evaluated_at = {ev.rule_id: ev.as_of for ev in good}

    announce: dict[tuple[str, str], list[tuple[int, View]]] = defaultdict(list)
    replies: dict[tuple[str, int, str], list[tuple[int, View]]] = defaultdict(list)
    touched_parents: set[int] = set()
    for item in items:
        subject = _subject(item)
        rule_family = family(item.rule)
        muted = (
            silenced_by(silences, item.rule.id, subject, now)
            or in_mute_window(settings.slack.mute_windows, item.rule.id, now, settings.company.timezone)
            or (inhibited_by(subject, rule_family, firing_teams) if firing_teams is not None else None)
        )
        prior = state_of(item.row) if item.row is not None else None
        severity = item.finding.severity if item.finding else None
        decision = decide(prior, severity, _timing(item.rule, settings), now, muted)
        result.outcomes.append(Outcome(item.rule.id, subject, decision))
        alert_id = _store(conn, item, subject, rule_family, decision, settings)
        now_firing = decision.state is not None and decision.state.state == "firing"
        if firing_teams is not None and subject.type == "team" and now_firing:
            firing_teams[(rule_family, subject.name)] = item.rule.id
        if decision.notify is None or alert_id is None:
            continue
        finding = item.finding or finding_from_json(item.row.details)
        view = View(finding, "resolved" if decision.notify == "resolved" else "firing", decision.reason)
        parent = item.row.notification_id if item.row is not None else None
        if decision.notify == "firing" or parent is None:
            announce[(item.rule.id, route(item.rule, subject, settings.slack))].append((alert_id, view))
        else:
            replies[(item.rule.id, parent, decision.notify)].append((alert_id, view))
            if decision.notify == "resolved":
                touched_parents.add(parent)

    secrets = settings.secret_values()
    for (rule_id, channel), group in announce.items():
        ctx = _context(rules[rule_id], settings, evaluated_at[rule_id])
        message = announcement(ctx, [v for _, v in group])
        nid = _queue(conn, result, channel, "firing", rule_id, message, [a for a, _ in group], None, queued_at, secrets)
        conn.execute(update(alerts).where(alerts.c.id.in_([a for a, _ in group])).values(notification_id=nid))
    for (rule_id, parent, kind), group in replies.items():
        ctx = _context(rules[rule_id], settings, evaluated_at[rule_id])
        channel = conn.execute(select(notifications.c.channel).where(notifications.c.id == parent)).scalar_one()
        message = follow_up(ctx, kind, [v for _, v in group])
        _queue(conn, result, channel, kind, rule_id, message, [a for a, _ in group], parent, queued_at, secrets)
    for parent in sorted(touched_parents):
        _queue_edit(conn, result, parent, rules, settings, now, queued_at, secrets)
    _store_notes(conn, good, now)


def _subject(item: _Item) -> Subject:
    if item.finding is not None:
        return item.finding.subject
    row = item.row
    return Subject(row.subject_type or "company", row.subject, row.subject_name or row.subject, row.team)


def _timing(rule: Rule, settings: Settings) -> Timing:
    repeat = rule.repeat_interval
    if "repeat_interval" not in rule.model_fields_set:
        repeat = timedelta(hours=settings.slack.repeat_interval_h)
    return Timing(rule.for_, repeat, rule.keep_firing_for, rule.send_resolved)


def _firing_teams(conn: Connection, being_decided: set[str]) -> dict[tuple[str, str], str]:
    """Firing team alerts of rules not decided in this run: ``(family, team) -> rule id``."""
    rows = conn.execute(
        select(alerts.c.fingerprint, alerts.c.family, alerts.c.subject_name, alerts.c.rule_id).where(
            alerts.c.state == "firing", alerts.c.subject_type == "team"
        )
    )
    return {(r.family, r.subject_name): r.rule_id for r in rows if r.fingerprint not in being_decided}


def _store(
    conn: Connection, item: _Item, subject: Subject, rule_family: str, decision: Decision, settings: Settings
) -> int | None:
    """Write the alert row as the decision says; its id (None: no alert any more)."""
    if decision.state is None:
        if item.row is None:
            return None
        if item.row.notify_count:
            # A new episode that vanished while pending: back to how the last episode ended.
            conn.execute(update(alerts).where(alerts.c.id == item.row.id).values(state="resolved", consecutive=0))
        else:
            conn.execute(delete(alerts).where(alerts.c.id == item.row.id))
        return None
    values = state_values(decision.state)
    if item.finding is not None:
        f = item.finding
        values |= {
            "summary": f.summary or f.explanation,
            "details": finding_json(f),
            "subject_type": subject.type,
            "subject_name": subject.name,
            "team": subject.team,
            "family": rule_family,
            "channel": route(item.rule, subject, settings.slack),
        }
    if decision.notify is not None:
        values["notify_count"] = (item.row.notify_count if item.row is not None else 0) + 1
    if item.row is None:
        return conn.execute(
            insert(alerts).values(fingerprint=item.fp, rule_id=item.rule.id, subject=subject.id, **values)
        ).inserted_primary_key[0]
    conn.execute(update(alerts).where(alerts.c.id == item.row.id).values(**values))
    return item.row.id


def _context(rule: Rule, settings: Settings, as_of: datetime) -> Context:
    title = rule.description.strip().splitlines()[0] if rule.description.strip() else rule.id
    return Context(rule.id, title, settings.company.reporting_currency, as_of)


def _queue(
    conn: Connection,
    result: ProcessResult,
    channel: str,
    kind: str,
    rule_id: str,
    message: Message,
    alert_ids: Sequence[int],
    thread_of: int | None,
    now: datetime,
    secrets: Sequence[str],
) -> int:
    payload = redact(message.as_json(), secrets)
    nid = conn.execute(
        insert(notifications).values(
            alert_id=alert_ids[0] if len(alert_ids) == 1 else None,
            kind=kind,
            channel=channel,
            payload=json.dumps(payload, ensure_ascii=False),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            rule_id=rule_id,
            thread_of=thread_of,
        )
    ).inserted_primary_key[0]
    if alert_ids:
        conn.execute(insert(notification_alerts), [{"notification_id": nid, "alert_id": a} for a in alert_ids])
    result.messages.append(
        Outgoing(channel, kind, rule_id, Message(payload["text"], payload["blocks"]), thread_of, nid)
    )
    return nid


def _queue_edit(
    conn: Connection,
    result: ProcessResult,
    parent: int,
    rules: Mapping[str, Rule],
    settings: Settings,
    now: datetime,
    queued_at: datetime,
    secrets: Sequence[str],
) -> None:
    """An edit of the announcing message: its alerts with their status now (resolved struck through)."""
    head = conn.execute(select(notifications).where(notifications.c.id == parent)).one()
    rows = conn.execute(
        select(alerts)
        .join(notification_alerts, notification_alerts.c.alert_id == alerts.c.id)
        .where(notification_alerts.c.notification_id == parent)
        .order_by(alerts.c.id)
    ).all()
    rule = rules.get(head.rule_id)
    if rule is None or not rows:
        return
    views = [
        View(
            finding_from_json(r.details),
            "firing" if r.state == "firing" and r.notification_id == parent else "resolved",
        )
        for r in rows
    ]
    message = announcement(_context(rule, settings, now), views)
    _queue(conn, result, head.channel, "update", rule.id, message, [], parent, queued_at, secrets)


def _store_notes(conn: Connection, evaluations: Sequence[Evaluation], now: datetime) -> None:
    """Replace each evaluated rule's 'not evaluated' notes with this evaluation's."""
    conn.execute(delete(rule_notes).where(rule_notes.c.rule_id.in_([ev.rule_id for ev in evaluations])))
    rows = [
        {"rule_id": n.rule_id, "subject": n.subject.name, "reason": n.reason, "as_of": ev.as_of or now}
        for ev in evaluations
        for n in ev.notes
    ]
    if rows:
        conn.execute(insert(rule_notes), rows)
