"""Daemon soak: `service.py run` for minutes on compressed schedules, with CRM and Slack faults.

    .venv/bin/python bench/daemon_soak.py [--minutes 5] [--database sqlite|postgresql]

The sandbox (small company, its own temporary folder) runs in this process; the daemon is a
subprocess, as in production. Its schedules are compressed: a sync of each source every 3 s
(instead of 15 min), every rule of the default pack every 5 s (instead of daily or weekly),
the outbox every second and the digest every 30 s. While it runs, this script:

- changes the company every 10 s (deals edited, added, deleted: alerts fire and resolve);
- arms a fault every 2 s, in turn: Salesforce 503, 429 with Retry-After, dropped connection,
  expired session; HubSpot 429, 502, a 5 s timeout; Slack 500, 429, a dropped connection,
  a post that hangs 5 s;
- samples the daemon's RSS every 5 s.

At the end it stops the daemon with SIGTERM and checks: exit 0 within the bound, every
notification the outbox holds was sent (nothing lost), no notification reached Slack twice
(the message metadata carries its id; a digest chart's file name), and the RSS trend of the second half (MB per minute,
least squares) next to first, last and peak RSS and one sample a minute. Not part of CI's time budget.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, select, text  # noqa: E402

from models.tables import notifications, sync_runs  # noqa: E402
from sandbox.company import SCALES  # noqa: E402
from sandbox.company_mutate import mutate  # noqa: E402
from sandbox.runner import Sandbox  # noqa: E402

FAULTS = [  # (server, kind, options)
    ("salesforce", "server_error", {"path": "/query", "status": 503}),
    ("hubspot", "rate_limit", {"path": "/search", "retry_after": 1}),
    ("slack", "server_error", {"path": "chat.postMessage", "status": 500}),
    ("salesforce", "rate_limit", {"path": "/query", "retry_after": 1}),
    ("hubspot", "server_error", {"path": "/crm/", "status": 502}),
    ("slack", "rate_limit", {"path": "chat.postMessage", "retry_after": 1}),
    ("salesforce", "drop", {"path": "/query"}),
    ("hubspot", "timeout", {"path": "/crm/", "delay": 5.0}),
    ("slack", "drop", {"path": "chat.postMessage"}),
    ("salesforce", "expired_session", {"path": "/query"}),
    ("slack", "timeout", {"path": "chat.postMessage", "delay": 5.0}),
]
STOP_BOUND_S = 30.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    n = len(samples)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in samples) / var if var else 0.0


def compressed_rules(folder: Path) -> Path:
    """The default pack with every schedule at every 5 s."""
    import yaml

    out = folder / "rules.d"
    out.mkdir()
    for path in sorted((ROOT / "rules.d").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        for rule in data["rules"]:
            rule["schedule"] = "*/5 * * * * *"
        (out / path.name).write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def database_url(kind: str, folder: Path) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{folder}/warehouse.db", None
    base = os.environ.get("POSTGRES_TEST_URL")
    if not base:
        sys.exit("--database postgresql needs POSTGRES_TEST_URL")
    schema = f"soak_{os.getpid()}"
    with create_engine(base).begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", schema


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--debug-memory", type=float, metavar="MINUTES", help="run the daemon with --debug-memory MINUTES (slower)"
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="salespulse-soak-"))
    url, schema = database_url(args.database, folder)
    with Sandbox(folder / "sandbox", scale=SCALES["small"], seed=7) as box:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}
        env |= box.env() | {
            "SALESPULSE_DATABASE__URL": url,
            "SALESPULSE_RULES__PATHS": str(compressed_rules(folder)),
            "SALESPULSE_SYNC__INTERVAL_MINUTES": "0.05",
            "SALESPULSE_SYNC__MAX_RETRIES": "2",
            "SALESPULSE_SYNC__BACKOFF_BASE_S": "0.2",
            "SALESPULSE_SYNC__BACKOFF_MAX_S": "2",
            "SALESPULSE_SYNC__LOOKBACK_S": "5",
            "SALESPULSE_SERVICE__OUTBOX_INTERVAL_S": "1",
            "SALESPULSE_SERVICE__DIGEST_SCHEDULE": "*/30 * * * * *",
            "SALESPULSE_SERVICE__STOP_TIMEOUT_S": str(STOP_BOUND_S),
            "SALESPULSE_SLACK__POST_INTERVAL_S": "0",
            "SALESPULSE_SLACK__TIMEOUT_S": "3",
            "SALESPULSE_SLACK__RETRY_BASE_S": "1",
            "SALESPULSE_SLACK__RETRY_MAX_S": "5",
            "SALESPULSE_SALESFORCE__TIMEOUT_S": "3",
            "SALESPULSE_HUBSPOT__TIMEOUT_S": "3",
        }
        log_path = folder / "daemon.log"
        extra = ["--debug-memory", str(args.debug_memory)] if args.debug_memory else []
        daemon = subprocess.Popen(
            [sys.executable, str(ROOT / "service.py"), "run", *extra],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log_path.open("wb"),
        )
        print(f"soak: {args.minutes} min on {args.database}, daemon pid {daemon.pid}, log {log_path}", flush=True)
        servers = {"salesforce": box.salesforce, "hubspot": box.hubspot, "slack": box.slack}
        samples: list[tuple[float, float]] = []
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        next_fault = next_mutation = next_sample = t0 + 5
        armed = mutations = 0
        while time.monotonic() < end and daemon.poll() is None:
            now = time.monotonic()
            if now >= next_sample:
                samples.append((now - t0, rss_mb(daemon.pid)))
                next_sample += 5
            if now >= next_fault:
                server, kind, options = FAULTS[armed % len(FAULTS)]
                servers[server].faults.arm(kind, **options)
                armed += 1
                next_fault += 2
            if now >= next_mutation:
                mutate(box.store, seed=1000 + mutations, changed_fraction=0.02, added=2, deleted=1)
                mutations += 1
                next_mutation += 10
            time.sleep(0.2)
        if daemon.poll() is not None:
            print(f"the daemon died (exit {daemon.returncode}); see {log_path}")
            return 1
        for server in servers.values():
            server.faults.clear()
        _drain(url, timeout_s=120)  # faults off: the outbox empties (a timed-out post waits ~19 s first)
        stop_t = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=STOP_BOUND_S + 30)
        stop_s = time.monotonic() - stop_t
        report = _report(url, box, log_path, samples, armed, mutations, code, stop_s, args.minutes)
        print(json.dumps(report, indent=2))
    if schema:
        with create_engine(os.environ["POSTGRES_TEST_URL"]).begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    ok = report["exit_code"] == 0 and not report["notifications_lost"] and not report["notifications_sent_twice"]
    return 0 if ok else 1


def _drain(url: str, timeout_s: float) -> None:
    engine = create_engine(url)
    undelivered = select(func.count()).select_from(notifications).where(notifications.c.status != "sent")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(undelivered).scalar() == 0:
                break
        time.sleep(1)
    engine.dispose()


def _report(url, box, log_path, samples, armed, mutations, code, stop_s, minutes) -> dict:
    engine = create_engine(url)
    with engine.connect() as conn:
        by_status = dict(
            conn.execute(select(notifications.c.status, func.count()).group_by(notifications.c.status)).all()
        )
        runs = dict(conn.execute(select(sync_runs.c.status, func.count()).group_by(sync_runs.c.status)).all())
        queued = (
            conn.execute(select(notifications.c.id).where(notifications.c.kind.not_in(("update", "chart"))))
            .scalars()
            .all()
        )
        charts = conn.execute(select(notifications.c.id).where(notifications.c.kind == "chart")).scalars().all()
    engine.dispose()
    posted = [m.metadata["event_payload"]["id"] for m in box.slack.messages() if m.metadata]
    # a digest's chart is a file share (no metadata): its file is named after its row
    posted += [f.filename.split("-")[1] for m in box.slack.messages() for f in m.files]
    queued = [*queued, *charts]
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    jobs = [line for line in lines if line.get("event") == "job"]
    by_job: dict[str, dict[str, int]] = {}
    for job in jobs:
        kind = job["job"].split(":")[0]
        by_job.setdefault(kind, {}).setdefault(job["status"], 0)
        by_job[kind][job["status"]] += 1
    first = [s for s in samples if s[0] < samples[-1][0] / 2] if samples else []
    half = [s for s in samples if s[0] >= samples[-1][0] / 2] if samples else []
    syncs_per_source = by_job.get("sync", {}).get("ok", 0) / 2
    return {
        "minutes": minutes,
        "hours_of_15_min_syncs_equivalent": round(syncs_per_source * 15 / 60, 1),
        "faults_armed": armed,
        "company_mutations": mutations,
        "job_runs": by_job,
        "sync_runs_by_status": runs,
        "notifications_by_status": by_status,
        "notifications_lost": sorted(set(map(str, queued)) - set(posted)),
        "notifications_sent_twice": sorted({i for i in posted if posted.count(i) > 1}),
        "slack_messages": len(box.slack.messages()),
        "rss_mb_first": round(samples[0][1], 1) if samples else None,
        "rss_mb_last": round(samples[-1][1], 1) if samples else None,
        "rss_mb_peak": round(max(v for _, v in samples), 1) if samples else None,
        "rss_mb_per_minute_first_half": round(slope_per_minute(first), 2),
        "rss_mb_per_minute_second_half": round(slope_per_minute(half), 2),
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
        "rss_mb_by_minute": [round(v) for t, v in samples if int(t) % 60 < 5],
        "exit_code": code,
        "stop_seconds": round(stop_s, 2),
        "error_lines": sum(1 for line in lines if line.get("level") == "ERROR"),
    }


if __name__ == "__main__":
    sys.exit(main())
