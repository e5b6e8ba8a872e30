"""The schema comes from migrations, and the migrations match the models."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, insert, inspect, select

from models.database import alembic_config, head_revision, make_engine, open_warehouse, schema_version, upgrade_head
from models.tables import metadata, sync_state

ROOT = Path(__file__).resolve().parents[2]


def test_upgrade_from_empty_reaches_head_and_is_idempotent(warehouse_url: str) -> None:
    engine = make_engine(warehouse_url)
    assert schema_version(engine) is None
    upgrade_head(engine)
    upgrade_head(engine)
    assert schema_version(engine) == head_revision()
    engine.dispose()


def test_head_revision_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    assert head_revision() == scripts.get_current_head()
    for script in scripts.walk_revisions():
        assert Path(script.path).name.startswith(f"{script.revision}_"), "name migration files <revision>_<slug>.py"


def test_a_migrated_database_opens_without_importing_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/w.db"
    open_warehouse(url).dispose()
    probe = (
        f"import sys; from models.database import open_warehouse; open_warehouse({url!r}); "
        "print('alembic' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_models_and_migrations_agree(warehouse: Engine) -> None:
    # alembic check raises if autogenerate would produce any operation.
    command.check(alembic_config(warehouse))


def test_every_table_and_column_has_a_comment_for_analysts(warehouse: Engine) -> None:
    assert all(table.comment for table in metadata.tables.values())
    missing = [f"{t.name}.{c.name}" for t in metadata.tables.values() for c in t.columns if not c.comment]
    assert not missing, f"columns without a comment: {missing}"
    if warehouse.dialect.supports_comments:  # what an analyst sees in \\d+: the migrations wrote them
        inspector = inspect(warehouse)
        for table in metadata.tables.values():
            stored = {c["name"]: c.get("comment") for c in inspector.get_columns(table.name)}
            assert stored == {c.name: c.comment for c in table.columns}, table.name
            assert inspector.get_table_comment(table.name)["text"] == table.comment


def test_instants_come_back_aware_and_in_utc(warehouse: Engine) -> None:
    moment = datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    with warehouse.begin() as conn:
        conn.execute(insert(sync_state).values(source="s", stream="x", cursor=None, updated_at=moment))
        back = conn.execute(select(sync_state.c.updated_at)).scalar_one()
    assert back == moment
    assert back.tzinfo is not None
    assert back.utcoffset() == timedelta(0)
    assert back.hour == 7


def test_naive_datetime_is_refused(warehouse: Engine) -> None:
    with pytest.raises(Exception, match="naive datetime"), warehouse.begin() as conn:
        conn.execute(insert(sync_state).values(source="s", stream="x", updated_at=datetime(2026, 1, 1)))  # noqa: DTZ001
