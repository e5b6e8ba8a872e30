"""Two hand-started `sync --source` processes on a fresh warehouse, at the same time.

Both migrate the empty database on start and both bulk-load the shared tables (each drops
and re-creates their secondary indexes); schema changes must be serialized so that neither
fails and no row is lost.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import date
from pathlib import Path

from sqlalchemy import Engine, inspect

from models.database import head_revision, open_warehouse, schema_version
from models.tables import metadata, opportunities
from sandbox.company import SCALES
from sandbox.runner import Sandbox
from sync.writer import begin_bulk_load, ensure_indexes
from tests.sync.company_checks import differences

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("opportunities", "leads", "reps", "stage_changes", "activities")


def test_two_sources_started_together_on_a_fresh_warehouse(warehouse_url: str, tmp_path: Path) -> None:
    with Sandbox(tmp_path / "sb", scale=SCALES["small"], seed=5, anchor=date(2026, 11, 20)) as box:
        base = {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}
        env = {**base, **box.env(), "SALESPULSE_DATABASE__URL": warehouse_url}
        procs = {
            source: subprocess.Popen(
                [sys.executable, str(ROOT / "service.py"), "sync", "--source", source],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for source in ("salesforce", "hubspot")
        }
        outputs = {source: proc.communicate(timeout=300) for source, proc in procs.items()}
        for source, proc in procs.items():
            assert proc.returncode == 0, f"{source}: {outputs[source][1][-3000:]}"
        engine = open_warehouse(warehouse_url)
        try:
            assert schema_version(engine) == head_revision()
            with engine.connect() as conn:
                found = inspect(conn)
                for table in metadata.sorted_tables:
                    wanted = {ix.name for ix in table.indexes}
                    assert wanted <= {ix["name"] for ix in found.get_indexes(table.name)}, table.name
            for crm in ("salesforce", "hubspot"):
                for table in TABLES:
                    assert differences(engine, box.store, box.truth, crm, table) is None, (crm, table)
        finally:
            engine.dispose()


def test_bulk_load_index_ddl_from_two_processes_at_once(warehouse: Engine) -> None:
    """Two connections (as two sources' streams) drop and re-create one empty table's indexes in turn,
    as many times as it takes to interleave: neither ever fails on the other's DDL."""
    rounds = 60
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def load() -> None:
        start.wait()
        try:
            for _ in range(rounds):
                with warehouse.begin() as conn:
                    ensure_indexes(conn, opportunities)
                    begin_bulk_load(conn, opportunities)
                with warehouse.begin() as conn:
                    ensure_indexes(conn, opportunities)
        except Exception as exc:  # noqa: BLE001 - any failure in the thread is the finding: reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    with warehouse.connect() as conn:
        present = {ix["name"] for ix in inspect(conn).get_indexes("opportunities")}
    assert {ix.name for ix in opportunities.indexes} <= present
