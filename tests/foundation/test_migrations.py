"""The schema comes from migrations, and the migrations match the models."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, insert, inspect, select, update

from models.database import alembic_config, head_revision, make_engine, open_warehouse, schema_version, upgrade_head
from models.tables import metadata, opportunities, stage_changes, sync_state

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


def test_0010_backfills_when_each_stage_change_entered_its_stage_as_the_sync_derives_it(warehouse_url: str) -> None:
    from sync.engine import _derive_stage_left_entered

    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    engine = make_engine(warehouse_url)
    command.upgrade(alembic_config(engine), "0009")
    deal = {"source": "salesforce", "pipeline": "default", "stage": "B", "is_closed": False, "is_won": False,
            "synced_at": t0}  # fmt: skip
    # (id, deal, from, to, day changed); d3 is not in the warehouse (its stage changes still are)
    changes = [("c2", "d1", "B", "C", 9), ("c1", "d1", "A", "B", 4), ("c3", "d1", "C", "B", 9),
               ("c4", "d2", "A", "B", 2), ("c5", "d3", "A", "B", 7)]  # fmt: skip
    with engine.begin() as conn:
        for i, day in (("d1", 1), ("d2", 0)):
            conn.execute(insert(opportunities).values(id=i, external_id=i, created_at=t0 + timedelta(days=day), **deal))
        for i, deal_id, before, after, day in changes:
            conn.execute(insert(stage_changes).values(id=i, source="salesforce", external_id=i, opportunity_id=deal_id,
                                                      from_stage=before, to_stage=after,
                                                      changed_at=t0 + timedelta(days=day), synced_at=t0))  # fmt: skip
    upgrade_head(engine)
    entered = select(stage_changes.c.id, stage_changes.c.entered_at).order_by(stage_changes.c.id)
    with engine.connect() as conn:
        migrated = dict(conn.execute(entered).all())
    # c2 and c3 share an instant: the one first in id order entered at c1, the other at c2
    want = {"c1": 1, "c2": 4, "c3": 9, "c4": 0, "c5": 7}
    assert migrated == {i: t0 + timedelta(days=day) for i, day in want.items()}
    with engine.begin() as conn:
        conn.execute(update(stage_changes).values(entered_at=None))
        _derive_stage_left_entered(conn, "salesforce", t0)
        assert dict(conn.execute(entered).all()) == migrated
    engine.dispose()


def test_every_index_and_constraint_name_fits_postgresql() -> None:
    # PostgreSQL cuts a longer name (with a hash), so the model's name is then not the database's.
    names = [ix.name for table in metadata.tables.values() for ix in table.indexes]
    names += [c.name for table in metadata.tables.values() for c in table.constraints if isinstance(c.name, str)]
    assert [n for n in names if len(n) > 63] == []
