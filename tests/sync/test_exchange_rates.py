"""Multi-currency companies with the rates only in the CRMs: the fake Salesforce's
CurrencyType / DatedConversionRate and the fake HubSpot's exchange rates, read through the
real SDKs, on SQLite and PostgreSQL. No test here puts a rate in settings unless it tests
the override.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from connectors.registry import build_connector, enabled_sources
from connectors.retry import RetryPolicy
from models.clock import utc_now
from models.database import open_warehouse
from models.inventory import warehouse_status
from models.settings import load_settings
from models.tables import exchange_rates, opportunities, quarantine, quotas
from sandbox.company import SCALES
from sandbox.runner import Sandbox
from sync.engine import StreamResult, SyncEngine
from tests.sync.company_checks import actual, expected
from tests.sync.test_sync_command import run

CENT = Decimal("0.01")


def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, seed: int) -> Sandbox:
    box = Sandbox(tmp_path / "sandbox", scale=SCALES["small"], seed=seed, anchor=date(2026, 11, 20)).start()
    for name in [n for n in os.environ if n.startswith("SALESPULSE_")]:
        monkeypatch.delenv(name)
    for name, value in box.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SALESPULSE_QUOTAS__PATH")
    monkeypatch.setenv("SALESPULSE_SYNC__LOOKBACK_S", "0")
    monkeypatch.setenv("SALESPULSE_DATABASE__URL", url)
    return box


@pytest.fixture
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warehouse_url: str) -> Iterator[Sandbox]:
    sandbox = start(tmp_path, monkeypatch, warehouse_url, seed=11)
    yield sandbox
    sandbox.stop()


def sync_all(url: str, *, full: bool = False) -> dict[str, list[StreamResult]]:
    settings = load_settings()
    engine = open_warehouse(url)
    results = {}
    for source in enabled_sources(settings):
        connector = build_connector(source, settings, RetryPolicy(max_retries=2, sleep=lambda _s: None))
        try:
            results[source] = SyncEngine(engine, settings, utc_now).sync_source(connector, full=full)
        finally:
            connector.close()
    engine.dispose()
    return results


def statuses(results: dict[str, list[StreamResult]]) -> dict[str, str]:
    return {f"{r.source}/{r.stream}": r.status for runs in results.values() for r in runs}


def deals(engine: Engine, source: str) -> list[tuple[str, Decimal, str, date | None, Decimal]]:
    o = opportunities
    with engine.connect() as conn:
        rows = conn.execute(
            select(o.c.external_id, o.c.amount, o.c.currency, o.c.close_date, o.c.amount_reporting).where(
                o.c.source == source
            )
        ).all()
    return [(i, Decimal(str(a)), c, d, Decimal(str(r))) for i, a, c, d, r in rows]


def sf_expected(amount: Decimal, conversion_rate: str) -> Decimal:
    """What Salesforce shows: amount / ConversionRate, to the cent."""
    return (amount / Decimal(conversion_rate)).quantize(CENT, ROUND_HALF_UP)


def test_every_deal_lands_at_the_crms_rates(box: Sandbox, warehouse_url: str) -> None:
    results = sync_all(warehouse_url)
    assert set(statuses(results).values()) == {"ok"}
    engine = open_warehouse(warehouse_url)
    rates = box.truth.generator["crm_rates"]
    for crm in ("salesforce", "hubspot"):
        assert set(actual(engine, crm, "opportunities")) == expected(box.store, box.truth, crm, "opportunities")
        found = deals(engine, crm)
        assert {c for _, _, c, _, _ in found} - {"USD"}, f"{crm}: the company sells in other currencies"
        for deal_id, amount, currency, _, reporting in found:
            if crm == "salesforce":
                want = sf_expected(amount, rates["salesforce"][currency])
            else:
                want = (amount * Decimal(rates["hubspot"].get(currency, "1"))).quantize(CENT, ROUND_HALF_UP)
            assert abs(reporting - want) <= CENT, (crm, deal_id, currency, amount, reporting, want)
    with engine.connect() as conn:
        stored = conn.execute(select(exchange_rates.c.source, exchange_rates.c.currency, exchange_rates.c.rate)).all()
        assert conn.execute(select(quotas.c.amount_reporting).where(quotas.c.source == "salesforce")).first()
    assert {(s, c) for s, c, _ in stored} >= {("salesforce", "EUR"), ("hubspot", "EUR"), ("salesforce", "JPY")}
    shown = {(r.currency, r.origin) for r in warehouse_status(engine).rates}
    assert ("EUR", "salesforce") in shown
    assert ("EUR", "hubspot") in shown
    engine.dispose()


def test_a_settings_rate_wins_and_a_changed_rate_reconverts_stored_amounts(
    box: Sandbox, warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync_all(warehouse_url)
    engine = open_warehouse(warehouse_url)

    monkeypatch.setenv("SALESPULSE_COMPANY__FX_RATES__EUR", "2")
    assert set(statuses(sync_all(warehouse_url)).values()) == {"ok"}
    for crm in ("salesforce", "hubspot"):
        eur = [(a, r) for _, a, c, _, r in deals(engine, crm) if c == "EUR"]
        assert eur, crm
        assert all(r == (a * 2).quantize(CENT) for a, r in eur), f"{crm}: the settings rate must win"
    assert ("EUR", "settings") in {(r.currency, r.origin) for r in warehouse_status(engine, {"EUR": Decimal(2)}).rates}

    monkeypatch.delenv("SALESPULSE_COMPANY__FX_RATES__EUR")
    gbp = box.store.connect().execute("SELECT id FROM currencies WHERE crm = 'salesforce' AND iso_code = 'GBP'")
    box.store.update("currencies", "salesforce", [gbp.fetchone()[0]], conversion_rate="0.5")  # a rate is data
    assert set(statuses(sync_all(warehouse_url)).values()) == {"ok"}
    rates = box.truth.generator["crm_rates"]["salesforce"]
    for _, amount, currency, _, reporting in deals(engine, "salesforce"):
        if currency == "GBP":
            assert reporting == (amount * 2).quantize(CENT)
        elif currency == "EUR":
            assert abs(reporting - sf_expected(amount, rates["EUR"])) <= CENT
    engine.dispose()


def test_a_dated_rate_converts_by_close_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warehouse_url: str
) -> None:
    box = start(tmp_path, monkeypatch, warehouse_url, seed=2)  # even seeds: advanced currency management
    try:
        monkeypatch.setenv("SALESPULSE_HUBSPOT__ENABLED", "false")
        assert set(statuses(sync_all(warehouse_url)).values()) == {"ok"}
        dated = box.truth.generator["crm_rates"]["salesforce_dated"]
        engine = open_warehouse(warehouse_url)
        used: dict[str, set[str]] = {}
        for deal_id, amount, currency, close, reporting in deals(engine, "salesforce"):
            assert close is not None
            rate = next(
                r["conversion_rate"]
                for r in dated
                if r["iso_code"] == currency and r["start"] <= close.isoformat() < r["next_start"]
            )
            used.setdefault(currency, set()).add(rate)
            assert abs(reporting - sf_expected(amount, rate)) <= CENT, (deal_id, close, currency)
        assert len(used["EUR"]) > 1, "deals closing in different quarters convert at different rates"
        engine.dispose()
    finally:
        box.stop()


@pytest.mark.parametrize("fix", ["settings", "crm"])
def test_a_currency_without_any_rate_is_quarantined_degrades_the_run_and_is_released_once_a_rate_exists(
    box: Sandbox, warehouse_url: str, monkeypatch: pytest.MonkeyPatch, fix: str
) -> None:
    conn = box.store.connect()
    removed = conn.execute("SELECT * FROM currencies WHERE iso_code = 'EUR'").fetchall()
    conn.execute("DELETE FROM currencies WHERE iso_code = 'EUR'")
    conn.commit()
    results = sync_all(warehouse_url)
    found = statuses(results)
    assert found["salesforce/opportunities"] == "degraded"
    assert found["hubspot/opportunities"] == "degraded"
    degraded = next(r for r in results["salesforce"] if r.stream == "opportunities")
    assert "no exchange rate for EUR" in (degraded.error or "")
    assert "sync.max_quarantine_share" in (degraded.error or "")
    engine = open_warehouse(warehouse_url)
    with engine.connect() as db:
        reasons = db.execute(
            select(quarantine.c.reason).where(quarantine.c.stream == "opportunities", quarantine.c.reason.like("%EUR%"))
        ).scalars()
        reasons = list(reasons)
    assert len(reasons) > 50
    assert all("[company.fx_rates]" in r for r in reasons), "the reason says where to add a rate"
    assert "EUR" not in {c for crm in ("salesforce", "hubspot") for _, _, c, _, _ in deals(engine, crm)}

    if fix == "settings":
        monkeypatch.setenv("SALESPULSE_COMPANY__FX_RATES__EUR", "1.08")
    else:
        columns = removed[0].keys()
        conn.executemany(
            f"INSERT INTO currencies ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
            [tuple(r) for r in removed],
        )
        conn.commit()
    results = sync_all(warehouse_url)  # plain incremental: the quarantined deals are not re-read
    assert set(statuses(results).values()) == {"ok"}
    assert sum(r.released for runs in results.values() for r in runs) >= len(reasons)
    for crm in ("salesforce", "hubspot"):
        with engine.connect() as db:
            left = set(
                db.execute(
                    select(quarantine.c.external_id).where(
                        quarantine.c.source == crm, quarantine.c.stream == "opportunities"
                    )
                ).scalars()
            )
        assert left == box.truth.invalid_ids(crm, "deals"), f"{crm}: only the dirty deals stay quarantined"
        assert set(actual(engine, crm, "opportunities")) == expected(box.store, box.truth, crm, "opportunities")
    engine.dispose()


def test_a_single_currency_org_works_as_before(box: Sandbox, warehouse_url: str) -> None:
    conn = box.store.connect()
    conn.execute("DELETE FROM currencies WHERE crm = 'salesforce'")  # no CurrencyType: INVALID_TYPE
    conn.execute("UPDATE deals SET currency = 'USD' WHERE crm = 'salesforce'")
    conn.execute("UPDATE quotas SET currency = 'USD' WHERE crm = 'salesforce'")
    conn.commit()
    results = sync_all(warehouse_url)
    assert set(statuses(results).values()) == {"ok"}
    rates = next(r for r in results["salesforce"] if r.stream == "exchange_rates")
    assert rates.read == 0
    engine = open_warehouse(warehouse_url)
    assert set(actual(engine, "salesforce", "opportunities")) == expected(
        box.store, box.truth, "salesforce", "opportunities"
    )
    assert all(r == a for _, a, _, _, r in deals(engine, "salesforce"))
    engine.dispose()


def test_sync_exits_1_on_a_degraded_stream_and_status_shows_it_with_the_rates(tmp_path: Path) -> None:
    with Sandbox(tmp_path / "sb", scale=SCALES["small"], seed=3, anchor=date(2026, 11, 20)) as box:
        conn = box.store.connect()
        conn.execute("DELETE FROM currencies WHERE iso_code = 'GBP'")
        base = {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}
        env = {**base, **box.env(), "SALESPULSE_DATABASE__URL": f"sqlite:///{tmp_path}/w.db"}
        env["SALESPULSE_COMPANY__FX_RATES__JPY"] = "0.007"
        synced = run(env, "sync")
        status = run(env, "status")
        as_json = run(env, "status", "--json")
    assert synced.returncode == 1
    assert "degraded" in synced.stderr
    assert "salesforce/opportunities degraded: quarantined" in synced.stderr
    assert "no exchange rate for GBP" in synced.stderr
    summary = [line for line in synced.stdout.splitlines() if line.startswith("quarantined salesforce/opportunities")]
    assert any("no exchange rate for GBP" in line for line in summary), synced.stdout
    lines = status.stdout.splitlines()
    opp = next(line for line in lines if line.strip().startswith("salesforce/opportunities"))
    assert " degraded" in opp
    assert any("top reason" in line and "GBP" in line for line in lines)
    # The rates table: currency, rate, where it came from, validity, whether settings override it.
    cells = [line.split() for line in lines]
    assert ["JPY", "0.007", "settings"] in cells
    assert any(c[:1] == ["JPY"] and "salesforce" in c and c[-3:] == ["overridden", "by", "settings"] for c in cells)
    assert any(c[:1] == ["EUR"] and "hubspot" in c for c in cells)
    doc = json.loads(as_json.stdout)
    assert (
        next(s for s in doc["streams"] if s["stream"] == "opportunities" and s["source"] == "salesforce")["status"]
        == "degraded"
    )
    rates = {(r["currency"], r["origin"]): r for r in doc["exchange_rates"]}
    assert rates["JPY", "settings"]["rate"] == "0.007"
    assert rates["JPY", "salesforce"]["overridden_by_settings"] is True
    assert ("EUR", "hubspot") in rates
