"""What ``status`` shows: plain rows gathered once, then rendered as rich tables or JSON.

Gathering and rendering are apart so that a new fact (a degraded stream, a rate's
provenance) is one more key in a row, shown by both renderers; scripts read ``--json``
instead of scraping the table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from models.inventory import WarehouseStatus

BAD = ("degraded", "failed", "interrupted")  # statuses shown in red
STREAM_COLUMNS = ("stream", "last run", "age", "status", "rows", "quarantined", "cursor stamp", "ids at stamp")


@dataclass(frozen=True)
class RulesFile:
    path: Path
    exists: bool


def _short(iso: str | None) -> str:
    """'2026-05-01T12:00:00+00:00' as '2026-05-01 12:00:00Z' (every instant is UTC)."""
    return iso.replace("T", " ").replace("+00:00", "Z") if iso else "-"


def age(seconds: float | None) -> str:
    """'42s', '7m', '3h', '2d': how long ago, at a glance."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def stream_rows(st: WarehouseStatus, now: datetime) -> list[dict[str, Any]]:
    rows = []
    for s in st.streams:
        cursor = json.loads(s.cursor) if s.cursor else {}  # sync.cursor.Cursor's JSON: {"value", "ids"}
        rows.append(
            {
                "source": s.source,
                "stream": s.stream,
                "last_run": s.last_started_at.isoformat(timespec="seconds") if s.last_started_at else None,
                "age_s": round((now - s.last_started_at).total_seconds()) if s.last_started_at else None,
                "status": s.last_status,
                "rows": s.records_written,
                "quarantined": s.quarantined,
                "cursor_stamp": cursor.get("value"),
                "ids_at_stamp": len(cursor.get("ids", ())),
                "error": s.last_error,
            }
        )
    return rows


def rate_rows(st: WarehouseStatus) -> list[dict[str, Any]]:
    """Every rate in force and where it came from; the settings' first, then each CRM's."""
    return [
        {
            "currency": r.currency,
            "rate": None if r.rate is None else f"{r.rate.normalize():f}",  # a string: exact, as stored
            "origin": r.origin,
            "valid_from": r.valid_from.isoformat() if r.valid_from else None,
            "valid_to": r.valid_to.isoformat() if r.valid_to else None,
            "dated": r.dated,
            "overridden_by_settings": r.overridden_by_settings,
        }
        for r in st.rates
    ]


def daemon_document(st: WarehouseStatus) -> dict[str, Any]:
    """The scheduler lease and every daemon seen (newest first) with its rule/settings files and jobs."""
    return {
        "leader": {"holder": st.leader[0], "expires_at": st.leader[1].isoformat()} if st.leader else None,
        "instances": [
            {
                "holder": d.holder,
                "role": d.role,
                "started_at": d.started_at.isoformat(),
                "seen_at": d.seen_at.isoformat(),
                "files": d.state.get("files", {}),
                "jobs": d.state.get("jobs", {}),
            }
            for d in st.daemons
        ],
    }


def format_daemons(doc: dict[str, Any], most: int = 5) -> list[str]:
    """``daemon_document`` as the lines ``status`` prints (the ``most`` recently seen daemons)."""
    out = ["", "daemons"]
    if doc["leader"]:
        expires = datetime.fromisoformat(doc["leader"]["expires_at"])
        out.append(f"  leader lease: {doc['leader']['holder']} (expires {expires:%Y-%m-%d %H:%M:%S}Z)")
    if not doc["instances"]:
        out.append("  (no daemon has run against this warehouse)")
    for d in doc["instances"][:most]:
        started, seen = datetime.fromisoformat(d["started_at"]), datetime.fromisoformat(d["seen_at"])
        out.append(f"  {d['holder']}  {d['role']}, started {started:%Y-%m-%d %H:%M:%S}Z, last seen {seen:%H:%M:%S}Z")
        for name, files in d["files"].items():
            if files["problems"]:
                kept = (
                    f"the version loaded at {files['loaded_at']} ({files['summary']})" if files["loaded_at"] else "none"
                )
                out.append(f"    {name}: newest change REFUSED at {files['refused_at']}; running {kept}")
                out += [f"      {problem}" for problem in files["problems"]]
            else:
                out.append(f"    {name}: {files['summary']} (loaded {files['loaded_at']})")
        for job, j in sorted(d["jobs"].items()):
            line = f"    {job:<32} last {j.get('last_run_at', 'never')} {j.get('status', '-')}"
            line += f", next {j['next_run_at']}" if j.get("next_run_at") and d["role"] == "leader" else ""
            out.append(line + (f"\n      error {j['error']}" if j.get("error") else ""))
    return out


def status_document(
    database: str,
    st: WarehouseStatus,
    rules: Sequence[RulesFile],
    now: datetime,
    *,
    reporting_currency: str,
    alerting: dict[str, Any],
) -> dict[str, Any]:
    """Everything ``status`` shows; ``alerting`` is the alerts package's part (outbox, notes)."""
    return {
        "database": database,
        "schema_version": st.schema_version,
        "head_version": st.head_version,
        "row_counts": st.row_counts,
        "streams": stream_rows(st, now),
        "reporting_currency": reporting_currency,
        "exchange_rates": rate_rows(st),
        "stale_rows": st.stale_rows,
        "rules": [{"path": str(r.path), "exists": r.exists} for r in rules],
        "outbox": st.outbox,
        "alerting": alerting,
        "daemons": daemon_document(st),
    }


def render_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False)


def render_tables(doc: dict[str, Any], console: Console) -> None:
    current = "up to date" if doc["schema_version"] == doc["head_version"] else f"head is {doc['head_version']}"
    say = partial(console.print, markup=False, highlight=False, soft_wrap=True)  # CRM and file text as is
    say(f"database        {doc['database']}")
    say(f"schema version  {doc['schema_version']} ({current})")

    counts = _table("rows", "table", "rows")
    counts.columns[1].justify = "right"
    for name, n in doc["row_counts"].items():
        counts.add_row(name, f"{n:,}")
    console.print(counts)

    if not doc["streams"]:
        say("streams: (no sync has run yet)")
    else:
        streams = _table("streams", *STREAM_COLUMNS)
        for column in streams.columns[4:6]:
            column.justify = "right"
        streams.columns[7].justify = "right"
        for row in doc["streams"]:
            status = row["status"] or "-"
            style = "green" if status == "ok" else "red" if status in BAD else "yellow"
            streams.add_row(
                f"{row['source']}/{row['stream']}",
                _short(row["last_run"]) if row["last_run"] else "never",
                age(row["age_s"]),
                f"[{style}]{status}[/]",
                f"{row['rows']:,}" if row["rows"] is not None else "-",
                f"{row['quarantined']:,}",
                _short(row["cursor_stamp"]),
                f"{row['ids_at_stamp']:,}",
            )
        console.print(streams)
        for row in doc["streams"]:
            if row["error"]:  # a degraded run's error: how much it quarantined, the top reason
                style = "red" if row["status"] in BAD else None
                say(f"  {row['source']}/{row['stream']} {row['status']}: {row['error']}", style=style)

    _render_rates(doc, console)
    if doc["stale_rows"]:
        stale = _table("stale rows (the CRM's newer version is in quarantine)", "table", "stale rows")
        stale.columns[1].justify = "right"
        for name, n in doc["stale_rows"].items():
            stale.add_row(name, f"{n:,}")
        console.print(stale)

    rules = doc["rules"]
    loadable = [r["path"] for r in rules if r["exists"]]
    missing = [r["path"] for r in rules if not r["exists"]]
    say(f"\nrules: {len(loadable)} file(s) found" + (f": {', '.join(loadable)}" if loadable else ""))
    if missing:
        say(f"  not found (no rules are loaded from them; see [rules] paths): {', '.join(missing)}")
    outbox = ", ".join(f"{k} {v:,}" for k, v in sorted(doc["outbox"].items())) or "(empty)"
    say(f"outbox: {outbox}")


def _table(title: str, *columns: str) -> Table:
    return Table(*columns, box=box.SIMPLE_HEAD, title=title, title_justify="left")


def _render_rates(doc: dict[str, Any], console: Console) -> None:
    if not doc["exchange_rates"]:
        console.print(
            "exchange rates: (none: amounts in other currencies are quarantined until a CRM or settings has a rate)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return
    rates = _table(
        "exchange rates (settings override a CRM)",
        "currency",
        f"{doc['reporting_currency']} per unit",
        "from",
        "valid",
        "note",
    )
    rates.columns[1].justify = "right"
    for r in doc["exchange_rates"]:
        valid = f"{r['valid_from'] or '...'} to {r['valid_to'] or '...'}" if r["dated"] else ""
        rates.add_row(
            r["currency"],
            r["rate"] or "-",
            r["origin"],
            valid,
            "overridden by settings" if r["overridden_by_settings"] else "",
        )
    console.print(rates)
