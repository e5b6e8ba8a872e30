"""Rules benchmark: the whole default pack against a naive baseline, on SQLite and PostgreSQL.

    .venv/bin/python bench/rules_bench.py [--scales medium[,large-sf]] [--databases sqlite,postgresql]

``medium-sf`` / ``large-sf`` are the medium and large companies with one team on HubSpot (the fake
HubSpot serves 40 % of a million deals' history in hours; the warehouse rows are the same).

For each scale, the sandbox company (seed 1, anchored on a fixed day) is synced once with
``service.py sync`` into the first database's warehouse and copied into the others (kept under
``var/bench/rules`` and in the PostgreSQL schema ``bench_rules_<scale>``, reused by later runs;
``--pg-schema-prefix`` keeps a branch's PostgreSQL copy apart). Then, in the same run:

- **pack**: every rule of ``rules.d/`` evaluated as of the company's "today" with
  ``rules.check.evaluate_rules`` (one read snapshot), as ``check`` does: the first run (cold:
  plans and statements compiled) and the best of the next ``--repeat`` (warm: what a daemon
  pays on each schedule); Python heap peak (tracemalloc, in a further run) of a warm run;
- **one connection**: the same, best of ``--repeat``, with the rules run one after the other on one
  connection (``check`` runs them on one per core, at most four);
- **naive**: the same verdicts computed by loading the rows into Python
  (bench/naive_funnel.py, bench/naive_performance.py), with its time and the growth of the
  process's peak RSS while it ran;
- **agreement**: for each rule, the (subject, severity, value) set of both must be equal.

Targets (issue 10): pack <= 2 s at 1M deals on both databases, >= 20x faster than naive,
time growing no faster than linearly from 100k to 1M deals, memory bounded.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, create_engine, func, select, text  # noqa: E402

from bench import naive_funnel, naive_performance  # noqa: E402
from models.database import open_warehouse  # noqa: E402
from models.settings import CompanySettings  # noqa: E402
from models.tables import CRM_TABLES, STAGE_ROLLUPS, opportunities  # noqa: E402
from rules.check import evaluate_rules  # noqa: E402
from rules.loader import load_rules  # noqa: E402
from rules.model import Rule  # noqa: E402
from sandbox.company import SCALES  # noqa: E402
from sandbox.runner import Sandbox  # noqa: E402

PG_URL = os.environ.get("POSTGRES_TEST_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
WORK = ROOT / "var" / "bench" / "rules"
ANCHOR = date(2026, 11, 20)


@dataclass
class Result:
    scale: str
    database: str
    deals: int
    cold_s: float
    warm_s: float
    warm_cpu_s: float  # this process's CPU in the warm run: all of it on SQLite, the client's share on PostgreSQL
    serial_s: float  # warm, the rules one after the other on one connection
    pack_heap_mb: float
    naive_s: float
    naive_heap_mb: float
    findings: int
    rules: int
    disagreements: list[str]


def _url(scale: str, database: str, schema_prefix: str = "bench_rules") -> str:
    if database == "sqlite":
        return f"sqlite:///{WORK / f'{scale}.db'}"
    schema = f"{schema_prefix}_{scale}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    admin.dispose()
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"


def _deals(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(opportunities)).scalar_one())


def _marker(scale: str, database: str) -> Path:
    return WORK / f"{scale}-{database}.loaded"


def _sync(box: Sandbox, url: str) -> None:
    """``service.py sync`` of the sandbox into ``url``, as users run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}
    env.update(box.env())
    env["SALESPULSE_DATABASE__URL"] = url
    subprocess.run([sys.executable, str(ROOT / "service.py"), "sync"], env=env, cwd=ROOT, check=True)


def _copy(source_url: str, target_url: str) -> None:
    """Copy the CRM tables of a synced warehouse and the sync's stage rollups into an empty one (rules read
    the same rows; a second sync through the fake CRMs would only measure the sync again)."""
    source, target = open_warehouse(source_url), open_warehouse(target_url)
    with source.connect() as src, target.begin() as dst:
        for table in reversed((*CRM_TABLES, *STAGE_ROLLUPS)):
            dst.execute(table.delete())
        for table in (*CRM_TABLES, *STAGE_ROLLUPS):
            rows = src.execute(select(table)).mappings()
            while chunk := [dict(r) for r in rows.fetchmany(10_000)]:
                dst.execute(table.insert(), chunk)
    with target.connect() as conn:  # statistics for the planner, as autovacuum would gather them
        if conn.dialect.name == "postgresql":  # and the visibility map index-only scans need, as autovacuum sets it
            names = ", ".join(t.name for t in (*CRM_TABLES, *STAGE_ROLLUPS))
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(f"VACUUM (ANALYZE) {names}")
        else:
            conn.execute(text("ANALYZE"))
            conn.commit()
    source.dispose()
    target.dispose()


def _ensure_loaded(box: Sandbox, scale: str, database: str, url: str, first: str | None) -> float | None:
    """Fill the warehouse once (sync, or a copy of the first database's); seconds taken, or None if reused."""
    if _marker(scale, database).exists():
        return None
    began = time.perf_counter()
    if first is None:
        _sync(box, url)
    else:
        _copy(first, url)
    _marker(scale, database).write_text(url + "\n")
    return time.perf_counter() - began


def _heap_peak(work: Callable[[], Any]) -> float:
    """The Python heap peak of ``work``, in MB (tracemalloc; its time is not a measurement)."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def _verdicts(evaluations: list) -> dict[str, set]:
    return {e.rule_id: {(f.subject.id, f.severity, round(f.value, 4)) for f in e.findings} for e in evaluations}


def measure(scale: str, database: str, url: str, rules: tuple[Rule, ...], now: datetime, repeat: int) -> Result:
    engine = open_warehouse(url)
    company = CompanySettings()
    began = time.perf_counter()
    evaluations = evaluate_rules(rules, engine, company, now)
    cold = time.perf_counter() - began
    failed = [f"{e.rule_id}: {e.error}" for e in evaluations if e.error]
    warm, cpu = [], []
    for _ in range(repeat):
        began, began_cpu = time.perf_counter(), time.process_time()
        evaluate_rules(rules, engine, company, now)
        warm.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
    serial, one_connection = [], evaluations
    for _ in range(repeat):
        began = time.perf_counter()
        one_connection = evaluate_rules(rules, engine, company, now, connections=1)
        serial.append(time.perf_counter() - began)
    pack_heap = _heap_peak(lambda: evaluate_rules(rules, engine, company, now))

    def naive() -> dict[str, set]:
        with engine.connect() as conn:
            return {
                **naive_funnel.naive_verdicts(conn, rules, now, company),
                **naive_performance.naive_verdicts(conn, rules, now, company),
            }

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    baseline = naive()  # timed without tracemalloc, which slows allocation-heavy loops tenfold
    naive_s = time.perf_counter() - began
    naive_heap = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    mine = _verdicts(evaluations)
    disagreements = failed + [
        f"{rule_id}: pack {sorted(mine.get(rule_id, set()) - want)} naive {sorted(want - mine.get(rule_id, set()))}"
        for rule_id, want in baseline.items()
        if mine.get(rule_id, set()) != want
    ]
    disagreements += [f"{r}: no naive version" for r in mine if r not in baseline]
    if _verdicts(one_connection) != mine:
        disagreements.append("the pack on one connection found otherwise than on several")
    result = Result(
        scale,
        database,
        _deals(engine),
        cold,
        min(warm) if warm else cold,
        min(cpu) if cpu else 0.0,
        min(serial) if serial else cold,
        pack_heap,
        naive_s,
        naive_heap,
        sum(len(v) for v in mine.values()),
        len(rules),
        disagreements,
    )
    engine.dispose()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="medium")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--pg-schema-prefix",
        default="bench_rules",
        help="PostgreSQL schema (<prefix>_<scale>); the database is shared, the SQLite file is per checkout: "
        "a branch with other migrations needs its own",
    )
    args = parser.parse_args(argv)
    rules = load_rules([ROOT / "rules.d"]).rules
    WORK.mkdir(parents=True, exist_ok=True)
    results = []
    for scale in args.scales.split(","):
        with Sandbox(WORK / "sandbox", scale=SCALES[scale], seed=1, anchor=ANCHOR) as box:
            now = datetime.fromisoformat(box.truth.generator["anchor_end"].replace("Z", "+00:00"))
            first: str | None = None
            for database in args.databases.split(","):
                url = _url(scale, database, args.pg_schema_prefix)
                loaded = _ensure_loaded(box, scale, database, url, first)
                if loaded is not None:
                    how = "synced" if first is None else "copied from the first warehouse"
                    print(f"{scale} {database}: {how} in {loaded:.0f} s", flush=True)
                first = first or url
                result = measure(scale, database, url, rules, now, args.repeat)
                results.append(result)
                print(_line(result), flush=True)
    print()
    print(
        "| scale | database | deals | pack cold | pack warm (CPU here) | one connection | pack heap | naive "
        "| naive RSS growth | naive / warm | findings | agree |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.scale} | {r.database} | {r.deals:,} | {r.cold_s:.2f} s | {r.warm_s:.2f} s ({r.warm_cpu_s:.2f} s) | "
            f"{r.serial_s:.2f} s | {r.pack_heap_mb:.1f} MB | {r.naive_s:.1f} s | {r.naive_heap_mb:.0f} MB | "
            f"{r.naive_s / r.warm_s:.0f}x | {r.findings} | {'yes' if not r.disagreements else 'NO'} |"
        )
    for r in results:
        for problem in r.disagreements:
            print(f"DISAGREE {r.scale} {r.database} {problem}")
    return 1 if any(r.disagreements for r in results) else 0


def _line(r: Result) -> str:
    return (
        f"{r.scale} {r.database}: {r.rules} rules, {r.findings} findings; pack cold {r.cold_s:.2f} s, warm "
        f"{r.warm_s:.2f} s (CPU {r.warm_cpu_s:.2f} s), one connection {r.serial_s:.2f} s, "
        f"heap {r.pack_heap_mb:.1f} MB; "
        f"naive {r.naive_s:.1f} s, RSS +{r.naive_heap_mb:.0f} MB; "
        f"{'agree' if not r.disagreements else 'DISAGREE'}"
    )


if __name__ == "__main__":
    sys.exit(main())
