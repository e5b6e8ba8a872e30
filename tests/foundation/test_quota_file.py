"""The admins' quota CSV: every bad line named, a good file stored, the file is the truth."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select

from models.errors import ConfigError
from models.settings import CompanySettings
from models.tables import quotas, reps
from sync.quota_file import QuotaFileError, load_quota_file

NOW = datetime(2026, 5, 1, tzinfo=UTC)
COMPANY = CompanySettings(reporting_currency="USD", fx_rates={"EUR": Decimal("1.10")})
HEADER = "rep_email,period_start,period_end,amount,currency\n"


@pytest.fixture
def with_reps(warehouse: Engine) -> Engine:
    with warehouse.begin() as conn:
        conn.execute(
            insert(reps),
            [
                {
                    "id": f"salesforce:005{i}",
                    "source": "salesforce",
                    "external_id": f"005{i}",
                    "email": f"rep{i}@example.com",
                    "name": f"Rep {i}",
                    "is_active": True,
                    "synced_at": NOW,
                }
                for i in range(3)
            ],
        )
    return warehouse


def write(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "quotas.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


def test_good_file_is_stored_with_reporting_amounts(with_reps: Engine, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "REP0@example.com,2026-01-01,2026-03-31,100000,USD\n"
        "rep0@example.com,2026-04-01,2026-06-30,120000.5,USD\n"
        "\n"
        "rep1@example.com,2026-04-01,2026-06-30,50000,EUR\n",
    )
    with with_reps.begin() as conn:
        assert load_quota_file(conn, path, COMPANY, NOW) == 3
        rows = conn.execute(select(quotas).order_by(quotas.c.rep_id, quotas.c.period_start)).mappings().all()
    assert [(r["rep_id"], r["period_start"], r["amount"], r["amount_reporting"]) for r in rows] == [
        ("salesforce:0050", date(2026, 1, 1), Decimal("100000.00"), Decimal("100000.00")),
        ("salesforce:0050", date(2026, 4, 1), Decimal("120000.50"), Decimal("120000.50")),
        ("salesforce:0051", date(2026, 4, 1), Decimal("50000.00"), Decimal("55000.00")),
    ]
    assert {r["source"] for r in rows} == {"file"}


def test_rep_id_column_and_reload_replaces(with_reps: Engine, tmp_path: Path) -> None:
    header = "rep_id,period_start,period_end,amount,currency\n"
    first = write(tmp_path, "0050,2026-01-01,2026-03-31,1,USD\n0051,2026-01-01,2026-03-31,2,USD\n", header)
    with with_reps.begin() as conn:
        load_quota_file(conn, first, COMPANY, NOW)
    second = write(tmp_path, "salesforce:0052,2026-01-01,2026-03-31,3,USD\n", header)
    with with_reps.begin() as conn:
        load_quota_file(conn, second, COMPANY, NOW)
        rows = conn.execute(select(quotas.c.rep_id, quotas.c.amount)).all()
    assert rows == [("salesforce:0052", Decimal("3.00"))]


@pytest.mark.parametrize(
    ("body", "line", "expected"),
    [
        ("nobody@example.com,2026-01-01,2026-03-31,1,USD\n", 2, "unknown rep 'nobody@example.com'"),
        (",2026-01-01,2026-03-31,1,USD\n", 2, "rep_email is empty"),
        (
            "rep0@example.com,2026-01-01,2026-03-31,1,USD\nrep0@example.com,2026-03-01,2026-05-31,1,USD\n",
            3,
            "overlaps line 2",
        ),
        ("rep0@example.com,2026-01-01,2026-03-31,ten,USD\n", 2, "amount 'ten' is not a number"),
        ("rep0@example.com,2026-01-01,2026-03-31,-5,USD\n", 2, "must be a number from 0"),
        ("rep0@example.com,2026-01-01,2026-03-31,1e15,USD\n", 2, "must be a number from 0"),
        ("rep0@example.com,2026-01-01,2026-03-31,NaN,USD\n", 2, "must be a number from 0"),
        ("rep0@example.com,01/01/2026,2026-03-31,1,USD\n", 2, "period_start '01/01/2026' is not a date"),
        ("rep0@example.com,2026-04-01,2026-03-31,1,USD\n", 2, "before period_start"),
        ("rep0@example.com,2026-01-01,2026-03-31,1,GBP\n", 2, "currency 'GBP' has no rate"),
        (
            "rep1@example.com,2026-01-01,2026-03-31,1,USD\nrep0@example.com,2026-01-01,2026-02-30,1,USD\n",
            3,
            "period_end '2026-02-30' is not a date",
        ),
    ],
)
def test_bad_line_is_named_and_nothing_changes(
    with_reps: Engine, tmp_path: Path, body: str, line: int, expected: str
) -> None:
    with with_reps.begin() as conn:
        load_quota_file(conn, write(tmp_path, "rep2@example.com,2025-01-01,2025-12-31,9,USD\n"), COMPANY, NOW)
    path = write(tmp_path, body)
    with pytest.raises(QuotaFileError) as info, with_reps.begin() as conn:
        load_quota_file(conn, path, COMPANY, NOW)
    assert f"quotas.csv:{line}:" in str(info.value)
    assert expected in str(info.value)
    with with_reps.connect() as conn:
        assert conn.execute(select(quotas.c.rep_id)).scalars().all() == ["salesforce:0052"]


def test_all_problems_are_reported_at_once(with_reps: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "x@example.com,2026-01-01,2026-03-31,1,USD\nrep0@example.com,2026-01-01,2026-03-31,z,USD\n")
    with pytest.raises(QuotaFileError) as info, with_reps.connect() as conn:
        load_quota_file(conn, path, COMPANY, NOW)
    assert [n for n, _ in info.value.problems] == [2, 3]
    assert "line 3: amount 'z'" in str(info.value)


@pytest.mark.parametrize("header", ["email,period_start,period_end,amount,currency\n", "rep_email,start,end,amount\n"])
def test_wrong_header_says_what_is_expected(with_reps: Engine, tmp_path: Path, header: str) -> None:
    with pytest.raises(ConfigError) as info, with_reps.connect() as conn:
        load_quota_file(conn, write(tmp_path, "", header), COMPANY, NOW)
    assert "quotas.csv:1:" in str(info.value)
    assert "expected rep_email,period_start,period_end,amount,currency" in str(info.value)


def crm_quota(rep: int, start: date, end: date, amount: str = "999") -> dict:
    return {
        "source": "salesforce",
        "external_id": f"0J9{rep}{start:%m}",
        "rep_id": f"salesforce:005{rep}",
        "period_start": start,
        "period_end": end,
        "amount": Decimal(amount),
        "currency": "USD",
        "amount_reporting": Decimal(amount),
        "synced_at": NOW,
    }


Q1 = (date(2026, 1, 1), date(2026, 3, 31))
Q2 = (date(2026, 4, 1), date(2026, 6, 30))


@pytest.mark.parametrize(
    ("file_body", "effective"),
    [
        # (file lines) -> which Salesforce quotas stay effective, as (rep, quarter start month)
        ("", {(0, 1), (0, 4), (1, 1)}),
        ("rep0@example.com,2026-01-01,2026-03-31,100,USD\n", {(0, 4), (1, 1)}),  # same rep and period
        ("rep0@example.com,2026-02-01,2026-02-28,100,USD\n", {(0, 4), (1, 1)}),  # a month inside the quarter
        ("rep0@example.com,2026-03-31,2026-04-01,100,USD\n", {(1, 1)}),  # touches both quarters
        ("rep2@example.com,2026-01-01,2026-06-30,100,USD\n", {(0, 1), (0, 4), (1, 1)}),  # another rep
    ],
)
def test_the_file_wins_over_salesforce_for_the_same_rep_and_period(
    with_reps: Engine, tmp_path: Path, file_body: str, effective: set[tuple[int, int]]
) -> None:
    with with_reps.begin() as conn:
        conn.execute(insert(quotas), [crm_quota(0, *Q1), crm_quota(0, *Q2), crm_quota(1, *Q1)])
        load_quota_file(conn, write(tmp_path, file_body), COMPANY, NOW)
        rows = conn.execute(select(quotas.c.source, quotas.c.rep_id, quotas.c.period_start, quotas.c.is_effective))
        got = {(r.source, int(r.rep_id[-1]), r.period_start.month, r.is_effective) for r in rows}
    want_crm = {("salesforce", rep, month, (rep, month) in effective) for rep, month in [(0, 1), (0, 4), (1, 1)]}
    assert {g for g in got if g[0] == "salesforce"} == want_crm
    assert all(g[3] for g in got if g[0] == "file")  # the file's own quotas always count


def test_a_crm_quota_synced_after_the_file_still_loses(with_reps: Engine, tmp_path: Path) -> None:
    from sync.quota_file import apply_file_precedence

    with with_reps.begin() as conn:
        load_quota_file(conn, write(tmp_path, "rep0@example.com,2026-01-01,2026-03-31,100,USD\n"), COMPANY, NOW)
        conn.execute(insert(quotas), [crm_quota(0, *Q1)])  # as the next sync writes it
        apply_file_precedence(conn)  # as the sync does after its streams
        assert conn.execute(select(quotas.c.is_effective).where(quotas.c.source == "salesforce")).scalar_one() is False


def test_hired_on_column_overrides_the_crm_hire_date_and_reverts_when_removed(
    with_reps: Engine, tmp_path: Path
) -> None:
    from sqlalchemy import update

    with with_reps.begin() as conn:
        conn.execute(update(reps).values(hired_on_crm=date(2025, 6, 1)))
    header = "rep_email,period_start,period_end,amount,currency,hired_on\n"
    lines = "rep0@example.com,2026-01-01,2026-03-31,1,USD,2026-01-15\nrep0@example.com,2026-04-01,2026-06-30,1,USD,\n"
    with with_reps.begin() as conn:
        load_quota_file(
            conn, write(tmp_path, lines + "rep1@example.com,2026-01-01,2026-03-31,1,USD,\n", header), COMPANY, NOW
        )
        hired = dict(conn.execute(select(reps.c.external_id, reps.c.hired_on)).all())
    assert hired == {"0050": date(2026, 1, 15), "0051": date(2025, 6, 1), "0052": date(2025, 6, 1)}
    with with_reps.begin() as conn:
        load_quota_file(conn, write(tmp_path, "rep0@example.com,2026-01-01,2026-03-31,1,USD\n"), COMPANY, NOW)
        assert conn.execute(select(reps.c.hired_on).where(reps.c.external_id == "0050")).scalar_one() == date(
            2025, 6, 1
        )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("rep0@example.com,2026-01-01,2026-03-31,1,USD,15/01/2026\n", "line 2: hired_on '15/01/2026' is not a date"),
        (
            "rep0@example.com,2026-01-01,2026-03-31,1,USD,2026-01-15\nrep0@example.com,2026-04-01,2026-06-30,1,USD,2026-02-01\n",
            "line 3: hired_on 2026-02-01 differs from line 2 (2026-01-15)",
        ),
    ],
)
def test_a_bad_hired_on_is_named(with_reps: Engine, tmp_path: Path, body: str, expected: str) -> None:
    header = "rep_email,period_start,period_end,amount,currency,hired_on\n"
    with pytest.raises(QuotaFileError) as info, with_reps.connect() as conn:
        load_quota_file(conn, write(tmp_path, body, header), COMPANY, NOW)
    line, message = expected.split(": ", 1)
    assert f"quotas.csv:{line.split()[1]}: {message}" in str(info.value)


LEAVE_HEADER = "rep_email,period_start,period_end,amount,currency,lead_capacity,leave_from,leave_until\n"


def test_lead_capacity_and_leave_are_stored_per_rep_and_cleared_when_removed(with_reps: Engine, tmp_path: Path) -> None:
    body = (
        "rep0@example.com,2026-01-01,2026-03-31,1,USD,0.5,2026-02-01,2026-02-14\n"
        "rep0@example.com,2026-04-01,2026-06-30,1,USD,,,\n"  # empty: the other line's facts stand
        "rep1@example.com,2026-01-01,2026-03-31,1,USD,2,2026-03-01,\n"  # open-ended leave
        "rep2@example.com,2026-01-01,2026-03-31,1,USD,,,\n"
    )
    columns = (reps.c.external_id, reps.c.lead_capacity, reps.c.leave_from, reps.c.leave_until)
    with with_reps.begin() as conn:
        load_quota_file(conn, write(tmp_path, body, LEAVE_HEADER), COMPANY, NOW)
        stored = conn.execute(select(*columns).order_by(reps.c.external_id)).all()
    assert [tuple(r) for r in stored] == [
        ("0050", 0.5, date(2026, 2, 1), date(2026, 2, 14)),
        ("0051", 2.0, date(2026, 3, 1), None),
        ("0052", None, None, None),
    ]
    with with_reps.begin() as conn:
        load_quota_file(conn, write(tmp_path, "rep0@example.com,2026-01-01,2026-03-31,1,USD\n"), COMPANY, NOW)
        assert conn.execute(select(*columns[1:]).distinct()).all() == [(None, None, None)]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "rep0@example.com,2026-01-01,2026-03-31,1,USD,half,,\n",
            "line 2: lead_capacity 'half' must be a number from 0",
        ),
        ("rep0@example.com,2026-01-01,2026-03-31,1,USD,-1,,\n", "line 2: lead_capacity '-1' must be a number from 0"),
        ("rep0@example.com,2026-01-01,2026-03-31,1,USD,nan,,\n", "line 2: lead_capacity 'nan' must be a number from 0"),
        (
            "rep0@example.com,2026-01-01,2026-03-31,1,USD,,2026-13-01,\n",
            "line 2: leave_from '2026-13-01' is not a date",
        ),
        ("rep0@example.com,2026-01-01,2026-03-31,1,USD,,,2026-02-01\n", "line 2: leave_until '2026-02-01' without"),
        (
            "rep0@example.com,2026-01-01,2026-03-31,1,USD,,2026-02-10,2026-02-01\n",
            "line 2: leave_until 2026-02-01 is before leave_from 2026-02-10",
        ),
        (
            "rep0@example.com,2026-01-01,2026-03-31,1,USD,1,,\nrep0@example.com,2026-04-01,2026-06-30,1,USD,0.5,,\n",
            "line 3: lead_capacity 0.5 differs from line 2 (1) for the same rep",
        ),
        (
            "rep0@example.com,2026-01-01,2026-03-31,1,USD,,2026-02-01,\n"
            "rep0@example.com,2026-04-01,2026-06-30,1,USD,,2026-05-01,2026-05-09\n",
            "line 3: leave 2026-05-01..2026-05-09 differs from line 2 (2026-02-01..)",
        ),
    ],
)
def test_a_bad_lead_capacity_or_leave_is_named_and_nothing_changes(
    with_reps: Engine, tmp_path: Path, body: str, expected: str
) -> None:
    with pytest.raises(QuotaFileError) as info, with_reps.begin() as conn:
        load_quota_file(conn, write(tmp_path, body, LEAVE_HEADER), COMPANY, NOW)
    line, message = expected.split(": ", 1)
    assert f"quotas.csv:{line.split()[1]}: {message}" in str(info.value)
    with with_reps.connect() as conn:
        assert conn.execute(select(quotas)).all() == []


def test_a_rep_synced_again_keeps_the_files_capacity_and_leave(with_reps: Engine, tmp_path: Path) -> None:
    from sync.rows import STREAM_TABLES
    from sync.writer import upsert

    spec = STREAM_TABLES["reps"]
    body = "rep0@example.com,2026-01-01,2026-03-31,1,USD,0.5,2026-02-01,2026-02-14\n"
    columns = (reps.c.name, reps.c.lead_capacity, reps.c.leave_from, reps.c.leave_until)
    with with_reps.begin() as conn:
        load_quota_file(conn, write(tmp_path, body, LEAVE_HEADER), COMPANY, NOW)
        row = dict(conn.execute(select(reps).where(reps.c.external_id == "0050")).mappings().one())
        # as the next sync writes the CRM's version of the rep (renamed there)
        upsert(conn, reps, [row | {"name": "Rep Zero", "lead_capacity": None}], spec.conflict, spec.update_columns,
               spec.derived)  # fmt: skip
        assert tuple(conn.execute(select(*columns).where(reps.c.external_id == "0050")).one()) == (
            "Rep Zero", 0.5, date(2026, 2, 1), date(2026, 2, 14)
        )  # fmt: skip
