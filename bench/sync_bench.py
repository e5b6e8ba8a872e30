"""Sync benchmark: full and 1 %-changed incremental Salesforce syncs against a floor.

    .venv/bin/python bench/sync_bench.py [--scales medium,large] [--databases sqlite,postgresql]

For each scale the sandbox runs in its own process (``service.py sandbox``), so the fake
Salesforce does not share a CPU core or the GIL with the code measured. For each
database, in the same run:

- **floor**: a bare loop that fetches the same pages with the same SDK (simple-salesforce
  ``query``/``query_more`` of the connector's own SOQL), lets the SDK parse them, and
  executemany-inserts the raw values, with no validation, mapping, cursor or quarantine:
  the cost of network + database alone;
- **full**: ``service.py sync --source salesforce`` into an empty warehouse;
- **incremental**: the same after 1 % of the deals changed (plus their new history and
  activities), with the default lookback.

Reported: records/s, the ratio of the full sync's rate to the floor's, the incremental
time as a share of the full time, and the peak memory of each sync: the proportional set
size of the sync process and its stream workers together, sampled every 500 ms (shared
pages counted once), or the largest single process's peak RSS if that is more.
Targets (issue 4): full >= 0.6x floor on SQLite; incremental <= 5 % of full; peak RSS
<= 300 MB at 1M opportunities and flat (+-20 %) from 100k to 1M.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402

from connectors.retry import RetryPolicy  # noqa: E402
from connectors.salesforce import SalesforceConnector  # noqa: E402
from models.settings import load_settings  # noqa: E402
from models.tables import sync_runs  # noqa: E402
from sandbox.company import mutate  # noqa: E402
from sandbox.store import Store  # noqa: E402

PG_URL = os.environ.get("POSTGRES_TEST_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
WORK = ROOT / "var" / "bench"


@dataclass
class Measure:
    records: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def start_sandbox(scale: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "service.py"), "sandbox", "--scale", scale, "--seed", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=_clean_env(),
    )
    env: dict[str, str] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.match(r"export (\w+)='(.*)'", line.strip())
        if match:
            env[match.group(1)] = match.group(2)
        if line.startswith("# Ctrl-C"):
            return proc, env
    raise RuntimeError("the sandbox did not start")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the sync and its stream workers)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return found


def _pss_mb(pids: list[int]) -> float:
    """Proportional set size: shared pages (a forked worker's inherited memory) counted once in all."""
    total_kb = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
        except OSError:
            pass
    return total_kb / 1024


def run_sync(env: dict[str, str]) -> tuple[float, float]:
    """Seconds and peak memory (MB, the sync and its workers together) of one `service.py sync` process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "service.py"), "sync", "--source", "salesforce"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            peak[0] = max(peak[0], _pss_mb(_tree(proc.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"sync failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    # The largest single process, should sampling have missed a short peak.
    return seconds, max(peak[0], usage.ru_maxrss / 1024)


def records_read(db_url: str, since_id: int) -> tuple[int, int]:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        n = conn.execute(select(func.sum(sync_runs.c.records_read)).where(sync_runs.c.id > since_id)).scalar_one()
        last = conn.execute(select(func.max(sync_runs.c.id))).scalar_one()
    engine.dispose()
    return int(n or 0), int(last or 0)


def floor(env: dict[str, str], db_url: str) -> Measure:
    """Fetch every stream's pages with the SDK, insert raw values, nothing else."""
    for key, value in env.items():
        os.environ[key] = value
    settings = load_settings()
    connector = SalesforceConnector(settings.salesforce, RetryPolicy(), reporting_currency="USD")
    streams = connector.streams()
    sf = connector.client.sf  # the same SDK client, configured as the connector configures it
    is_pg = db_url.startswith("postgresql")
    if is_pg:
        conn = psycopg.connect(db_url.replace("postgresql+psycopg", "postgresql"), autocommit=False)
    else:
        import sqlite3

        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"))
    total, t0 = 0, time.perf_counter()
    for stream in streams:
        soql = stream.soql(None)
        fields = [f.split(".")[0] for f in soql.split("SELECT ", 1)[1].split(" FROM")[0].split(", ")]
        table = f"floor_{stream.name}"
        cur = conn.cursor()
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} ({', '.join(f'c{i} TEXT' for i in range(len(fields)))})")
        marks = ", ".join(["%s" if is_pg else "?"] * len(fields))
        insert = f"INSERT INTO {table} VALUES ({marks})"
        result = sf.query(soql, include_deleted=True)
        while True:
            rows = [tuple(None if r.get(f) is None else str(r.get(f)) for f in fields) for r in result["records"]]
            cur.executemany(insert, rows)
            conn.commit()
            total += len(rows)
            if result.get("done", True):
                break
            result = sf.query_more(result["nextRecordsUrl"], identifier_is_url=True, include_deleted=True)
    seconds = time.perf_counter() - t0
    conn.close()
    connector.close()
    return Measure(total, seconds)


def database_urls(kind: str, scale: str) -> str:
    if kind == "sqlite":
        path = WORK / f"{scale}-warehouse.db"
        for stale in WORK.glob(f"{scale}-warehouse.db*"):
            stale.unlink()
        return f"sqlite:///{path}"
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS bench CASCADE"))
        conn.execute(text("CREATE SCHEMA bench"))
    engine.dispose()
    return f"{PG_URL}?options=-csearch_path%3Dbench"


def floor_url(kind: str, scale: str) -> str:
    if kind == "sqlite":
        path = WORK / f"{scale}-floor.db"
        path.unlink(missing_ok=True)
        return f"sqlite:///{path}"
    return PG_URL


def bench(scale: str, kinds: list[str]) -> list[str]:
    lines = []
    proc, env = start_sandbox(scale)
    try:
        company = Path(env["SALESPULSE_QUOTAS__PATH"]).parent
        store = Store(company / "company.sqlite")
        for kind in kinds:
            fl = floor(env, floor_url(kind, scale))
            db_url = database_urls(kind, scale)
            sync_env = {**_clean_env(), **env, "SALESPULSE_DATABASE__URL": db_url}
            sync_env.pop("SALESPULSE_QUOTAS__PATH")
            full_s, full_rss = run_sync(sync_env)
            full_n, last = records_read(db_url, 0)
            summary = mutate(store, seed=int(time.time()), changed_fraction=0.01, added=0, deleted=0, crm="salesforce")
            incr_s, incr_rss = run_sync(sync_env)
            incr_n, _ = records_read(db_url, last)
            full = Measure(full_n, full_s)
            line = (
                f"{scale:<7} {kind:<10} floor {fl.rate:>8,.0f} rec/s ({fl.records:,} in {fl.seconds:.1f}s) | "
                f"full {full.rate:>8,.0f} rec/s ({full.records:,} in {full.seconds:.1f}s, peak memory "
                f"{full_rss:.0f} MB) = {full.rate / fl.rate:.2f}x floor | incremental 1% "
                f"({len(summary.changed['salesforce']):,} deals changed, {incr_n:,} records read) "
                f"{incr_s:.1f}s = {incr_s / full.seconds * 100:.1f}% of full, peak memory {incr_rss:.0f} MB"
            )
            print(line, flush=True)
            lines.append(line)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="medium,large")
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    for scale in args.scales.split(","):
        bench(scale, args.databases.split(","))


if __name__ == "__main__":
    main()
