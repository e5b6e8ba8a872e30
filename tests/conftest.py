"""Shared fixtures: a fresh warehouse on SQLite and on PostgreSQL for every warehouse test.

PostgreSQL comes from POSTGRES_TEST_URL (CI sets it; .ci/run fails when the
server is unreachable). Each test gets its own schema, named in the URL's search_path,
so tests never see each other's rows and a subprocess given the URL sees the same schema.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, create_engine, text

from models.database import open_warehouse

PG_URL = os.environ.get("POSTGRES_TEST_URL")
PG_SKIP = (
    "PostgreSQL half skipped: set POSTGRES_TEST_URL "
    "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) to run it; CI always does"
)


def _pg_schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"  # type: ignore[operator]
    return f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def warehouse_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """The URL of an empty database (not yet migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}"
        return
    if not PG_URL:
        if os.environ.get("POSTGRES_TEST_REQUIRED"):
            pytest.fail("POSTGRES_TEST_REQUIRED is set but POSTGRES_TEST_URL is not")
        pytest.skip(PG_SKIP)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _pg_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def warehouse(warehouse_url: str) -> Iterator[Engine]:
    """A migrated warehouse engine."""
    engine = open_warehouse(warehouse_url)
    yield engine
    engine.dispose()
