"""What the demo shows after it ran the product against the sandbox: Slack as a person reads it, a summary.

``python service.py demo`` (service.py) does the work with the real commands' modules: sync both
fake CRMs, check the default rule pack, deliver through the outbox, post the digest. This module
only reads back what the fake Slack received and what the warehouse holds, so what is printed
is what was delivered, not what was meant to be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from rich.console import Console
from rich.rule import Rule as Line
from rich.table import Table
from sqlalchemy import Engine, func, select

from alerts.terminal import render_message
from models.tables import CRM_TABLES, quarantine
from rules.findings import Evaluation
from sandbox.slack import FakeSlack

NEXT_COMMANDS = """\
Next, on the demo's warehouse (these read it; no CRM needed):
  export SALESPULSE_DATABASE__URL=sqlite:///{database}
  python service.py check --dry-run --as-of {as_of}         what the rules said a month ago; sends nothing
  python service.py rules backtest --from {backtest_from} --to {as_of} --every 1w   each rule's noise over time
  python service.py silence add --rule deal-no-activity --for 3d --comment "pipeline review on Friday"
  python service.py alerts list                                   the alerts and their state
  python service.py status                                        syncs, alerts, the outbox, the daemons
Point salespulse at a real org: in settings.toml set [salesforce] and/or [hubspot] enabled = true
(instance_url for Salesforce), then put the secrets in the environment: SALESPULSE_SALESFORCE__SESSION_ID
(or username + SALESPULSE_SALESFORCE__PASSWORD + SECURITY_TOKEN, or the JWT bearer flow),
SALESPULSE_HUBSPOT__ACCESS_TOKEN and SALESPULSE_SLACK__TOKEN; `python service.py sync`, then `check`,
then `run` for the daemon. README, "Operations", lists the permissions each stream needs."""


@dataclass(frozen=True)
class Shown:
    messages: int
    files: tuple[Path, ...]


def show_slack(slack: FakeSlack, out: Console, files_dir: Path) -> Shown:
    """Every channel's messages in order, threads marked; shared files saved to ``files_dir``."""
    files_dir.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    messages = slack.messages()
    channels = list(dict.fromkeys(m.channel_name for m in messages))
    for channel in channels:
        out.print(Line(f"#{channel}", style="magenta"))
        for message in (m for m in messages if m.channel_name == channel):
            note = "reply in thread" if message.thread_ts else ""
            for shared in message.files:
                path = files_dir / shared.filename
                path.write_bytes(shared.content)
                saved.append(path)
                note = f"{note}  file: {shared.title} -> {path}".strip()
            body = {"text": message.text or "(file)", "blocks": message.blocks}
            out.print(render_message(body, channel=f"#{channel}", note=note))
    return Shown(len(messages), tuple(saved))


def rows_per_source(engine: Engine) -> dict[str, dict[str, int]]:
    """Rows in each CRM table, per source; and the quarantine per source."""
    counts: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for table in (*CRM_TABLES, quarantine):
            for source, n in conn.execute(select(table.c.source, func.count()).group_by(table.c.source)):
                counts.setdefault(source, {})[table.name] = n
    return counts


def summary(
    out: Console,
    *,
    rows: Mapping[str, Mapping[str, int]],
    evaluations: Sequence[Evaluation],
    shown: Shown,
    database: Path,
    ground_truth: Path,
    as_of: date,
    seconds: float,
) -> None:
    tables = [t.name for t in CRM_TABLES] + [quarantine.name]
    synced = Table(title="Rows synced", title_justify="left")
    synced.add_column("table")
    for source in sorted(rows):
        synced.add_column("quota file" if source == "file" else source, justify="right")
    for name in tables:
        synced.add_row(name, *(f"{rows[s].get(name, 0):,}" for s in sorted(rows)))
    out.print(synced)
    found = Table(title="Findings per rule (default pack, rules.d/)", title_justify="left")
    for column in ("rule", "findings", "about"):
        found.add_column(column)
    for e in evaluations:
        about = ", ".join(dict.fromkeys(f.subject.name for f in e.findings)) or (
            "error: " + e.error if e.error else "-"
        )
        found.add_row(e.rule_id, str(len(e.findings)), about)
    out.print(found)
    out.print(f"Slack: {shown.messages} message(s) posted to the sandbox Slack, shown above")
    for path in shown.files:
        out.print(f"Chart: {path}")
    out.print(f"Warehouse: {database}  (SQLite; open it with sqlite3, or `python service.py status`)")
    out.print(f"The planted problems are listed in {ground_truth}")
    out.print(f"Demo took {seconds:.1f} s\n")
    earlier = as_of - timedelta(days=30)
    text = NEXT_COMMANDS.format(
        database=database, as_of=earlier.isoformat(), backtest_from=(earlier - timedelta(days=91)).isoformat()
    )
    out.print(text, highlight=False, markup=False)
