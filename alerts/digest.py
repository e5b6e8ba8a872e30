"""The team digest: where each team and rep stands against quota, the pipeline behind it, open alerts.

Its own command and schedule (``check`` never posts it): a digest is a status report people
read weekly, alerts are events. Individual and team attainment are both shown, with the
blended figure a compensation plan pays on (``slack.digest_team_weight``, 25 % team by
default), because a rep is paid on both. The chart (attainment against the pace line per rep)
is drawn with matplotlib's Agg backend (no display needed) and uploaded with files_upload_v2.
Both go through the durable outbox (:func:`queue_digests`), as alerts do: a leader killed
mid-digest neither loses it nor posts it twice.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert
from sqlalchemy.exc import IntegrityError

from alerts.blocks import MAX_BLOCKS, SECTION_LIMIT, Message, escape, format_value, redact
from models.settings import SlackSettings
from models.tables import notifications
from rules.findings import Standing, StandingRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenAlert:
    rule_id: str
    subject: str
    severity: str
    team: str | None


@dataclass(frozen=True)
class Digest:
    channel: str
    teams: tuple[str, ...]
    message: Message
    chart: bytes | None


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f} %"


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}x"


def _row_line(row: StandingRow, team_attainment: float | None, team_weight: float, currency: str) -> str:
    name = escape(row.subject.name)
    if row.quota is None:
        return f"• {name}: no quota this period · won {format_value(row.won, 'money', currency)}"
    blended = None
    if row.attainment is not None and team_attainment is not None:
        blended = (1 - team_weight) * row.attainment + team_weight * team_attainment
    return (
        f"• *{name}*: {_pct(row.attainment)} of {format_value(row.quota, 'money', currency)} "
        f"({row.deals_won} won) · pace {_pct(row.pace)} · projected {_pct(row.projected)} · "
        f"coverage {_times(row.coverage)} · blended {_pct(blended)}"
    )


def _team_line(row: StandingRow, currency: str) -> str:
    quota = format_value(row.quota, "money", currency) if row.quota else "no quota"
    return (
        f"*{escape(row.subject.name)}*: {_pct(row.attainment)} of {quota} "
        f"(won {format_value(row.won, 'money', currency)}) · pace {_pct(row.pace)} · "
        f"projected {_pct(row.projected)} · coverage {_times(row.coverage)}"
    )


def render_digest(
    standing: Standing,
    open_alerts: Sequence[OpenAlert],
    *,
    teams: Sequence[str] | None = None,
    team_weight: float = 0.25,
) -> Message:
    """The digest message for some teams (None: all of them), within Slack's limits."""
    wanted = set(teams) if teams is not None else None
    team_rows = [t for t in standing.teams if wanted is None or t.subject.name in wanted]
    cur = standing.currency
    elapsed = _pct(standing.elapsed)
    head = (
        f":bar_chart: Sales digest: {standing.period} {standing.period_start} to {standing.period_end} ({elapsed} gone)"
    )
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": head[:150]}}]
    blocks.append(
        _context(
            f"as of {standing.as_of:%Y-%m-%d %H:%M} UTC · pace 100 % = on track for quota · blended = "
            f"{100 - team_weight * 100:.0f} % individual + {team_weight * 100:.0f} % team attainment"
        )
    )
    by_team: dict[str | None, list[StandingRow]] = defaultdict(list)
    for row in standing.reps:
        by_team[row.subject.team].append(row)
    left_out = 0
    for team in team_rows:
        lines = [_row_line(r, team.attainment, team_weight, cur) for r in by_team.get(team.subject.name, [])]
        section_blocks = [{"type": "divider"}, _section(_team_line(team, cur)), *_sections(lines)]
        if len(blocks) + len(section_blocks) > MAX_BLOCKS - 3:
            left_out += 1
            continue
        blocks += section_blocks
    if left_out:
        blocks.append(_section(f"…and {left_out} more team(s): see `python service.py digest --dry-run`"))
    names = {t.subject.name for t in team_rows}
    relevant = [a for a in open_alerts if wanted is None or a.team in names or a.team is None]
    blocks.append({"type": "divider"})
    if relevant:
        counts: dict[str, list[OpenAlert]] = defaultdict(list)
        for a in relevant:
            counts[a.rule_id].append(a)
        lines = [
            f"• `{escape(rule)}`: {len(found)} ({', '.join(escape(a.subject) for a in found[:5])}"
            f"{'…' if len(found) > 5 else ''})"
            for rule, found in sorted(counts.items())
        ]
        blocks += _sections([f"*Open alerts ({len(relevant)})*", *lines])[: MAX_BLOCKS - len(blocks)]
    else:
        blocks.append(_section("*Open alerts*: none"))
    text = f"Sales digest {standing.period_start} to {standing.period_end}: " + "; ".join(
        f"{t.subject.name} {_pct(t.attainment)} of quota" for t in team_rows[:10]
    )
    return Message(escape(text)[:2000], blocks[:MAX_BLOCKS])


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT]}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:SECTION_LIMIT]}]}


def _sections(lines: Sequence[str]) -> list[dict[str, Any]]:
    """Lines packed into sections of at most 3,000 characters (a line longer than that is cut)."""
    out: list[str] = []
    current = ""
    for line in lines:
        line = line if len(line) < SECTION_LIMIT else line[: SECTION_LIMIT - 2] + "…"
        if current and len(current) + 1 + len(line) > SECTION_LIMIT:
            out.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        out.append(current)
    return [_section(s) for s in out]


def chart_png(standing: Standing, teams: Sequence[str] | None = None) -> bytes:
    """Attainment per rep as bars, with the pace line (the share of the period gone): PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = [r for r in standing.reps if r.attainment is not None and (teams is None or r.subject.team in set(teams))][
        :60
    ]
    fig = Figure(figsize=(8, max(2.5, 0.28 * len(rows) + 1.2)), dpi=100)
    ax = fig.subplots()
    names = [f"{r.subject.name[:28]} ({(r.subject.team or '')[:14]})" for r in rows]
    values = [r.attainment * 100 for r in rows]  # type: ignore[operator]
    colors = ["#2e7d32" if (r.pace or 0) >= 1 else "#c62828" if (r.pace or 0) < 0.7 else "#f9a825" for r in rows]
    ax.barh(range(len(rows)), values, color=colors)
    ax.set_yticks(range(len(rows)), labels=names, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(
        standing.elapsed * 100, color="#333333", linestyle="--", linewidth=1, label="pace (share of period gone)"
    )
    ax.set_xlabel("attainment, % of quota")
    ax.set_title(f"Attainment vs pace, {standing.period} to {standing.period_end}")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def plan_digests(
    standing: Standing,
    open_alerts: Sequence[OpenAlert],
    slack: SlackSettings,
    *,
    channel: str | None = None,
    team_weight: float = 0.25,
) -> list[Digest]:
    """One digest per channel: the teams routed there (``slack.team_channels``, else the default channel)."""
    if channel is not None:
        routed = {channel: [t.subject.name for t in standing.teams]}
    else:
        routed = defaultdict(list)
        for team in standing.teams:
            routed[slack.team_channels.get(team.subject.name, slack.default_channel)].append(team.subject.name)
    return [
        Digest(
            where,
            tuple(names),
            render_digest(standing, open_alerts, teams=names, team_weight=team_weight),
            chart_png(standing, names) if slack.digest_chart else None,
        )
        for where, names in routed.items()
    ]


CHART_FILENAME = "attainment-vs-pace.png"
CHART_TITLE = "Attainment vs pace per rep"


def queue_digests(
    engine: Engine, digests: Sequence[Digest], now: datetime, *, period: str | None, secrets: Sequence[str] = ()
) -> list[int]:
    """Put each digest in the outbox (its chart a reply row in its thread); the new digest rows' ids.

    The outbox then posts it with the alerts' guarantees: the row id in the message metadata,
    ``sending`` before the post and ``sent`` after Slack's ok, the history read before any re-post.
    The chart is uploaded only once the message is sent, in its thread, as its own row. ``period``
    (the scheduled time of a daemon-run digest) makes queuing idempotent: a channel that already has
    a digest for the period (an earlier run, another leader) gets none more. A hand-run digest has
    none and is always queued.
    """
    queued: list[int] = []
    for digest in digests:
        try:
            with engine.begin() as conn:
                row = {"channel": digest.channel, "status": "pending", "attempts": 0}
                row |= {"next_attempt_at": now, "created_at": now}
                payload = json.dumps(redact(digest.message.as_json(), secrets), ensure_ascii=False)
                digest_id = conn.execute(
                    insert(notifications).values(kind="digest", payload=payload, digest_period=period, **row)
                ).inserted_primary_key[0]
                if digest.chart is not None:
                    chart = {"filename": CHART_FILENAME, "title": CHART_TITLE}
                    chart["png_base64"] = base64.b64encode(digest.chart).decode()
                    conn.execute(
                        insert(notifications).values(
                            kind="chart", payload=json.dumps(chart), thread_of=digest_id, **row
                        )
                    )
        except IntegrityError:
            if period is None:
                raise
            log.info("digest for %s at %s already queued; not queued again", digest.channel, period)
            continue
        queued.append(digest_id)
    return queued
