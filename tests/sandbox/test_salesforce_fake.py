"""The fake Salesforce, driven by the real simple-salesforce SDK over HTTPS, and its SOQL
subset tested on its own (parser table, compiled SQL run against the store)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import ssl
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree
from xml.sax.saxutils import escape as xml_escape

import jwt
import pytest
import requests
import trustme
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from simple_salesforce import Salesforce, SalesforceLogin
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from sandbox.salesforce import ORG_ID, SCHEMA, FakeSalesforce
from sandbox.salesforce_login import INVALID_LOGIN
from sandbox.soql import BoolOp, Comparison, CountAll, FieldRef, Not, SoqlError, compile_query, parse
from sandbox.store import Store, iso_utc
from tests.connectors.login_routing import session_to

TOKEN = "00Dsandbox!session"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)
N_DEALS = 4500
DEAL_FIELDS = "Id, Name, Amount, StageName, IsClosed, CloseDate, SystemModstamp, IsDeleted"


def sfid(prefix: str, seq: int) -> str:
    return f"{prefix}{seq:012d}AAA"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


SF = {"crm": "salesforce"}
STAGES = [("Prospecting", 0.1, 0, 0), ("Negotiation", 0.6, 0, 0), ("Closed Won", 1.0, 1, 1), ("Closed Lost", 0.0, 1, 0)]
USERS = [("Ann", "Lee"), ("Bob", "Roe"), ("Cy", "Diaz"), ("Di", "Ng"), ("Ed", "Fox")]
KINDS = ["call", "email", "task", "meeting", "note"]


def _stamps(moment: datetime) -> dict[str, str]:
    return {"created_at": iso_utc(moment), "modified_at": iso_utc(moment)}


def _team(i: int) -> dict:
    parent = sfid("00E", 1) if i > 1 else None
    return {**SF, "id": sfid("00E", i), "seq": i, "name": f"Team {i}", "parent_id": parent, **_stamps(T0)}


def _user(i: int) -> dict:
    first, last = USERS[i - 1]
    return {
        **SF,
        **dict(id=sfid("005", i), seq=i, email=f"{first.lower()}@acme.test", first_name=first, last_name=last),
        **dict(title="AE", team_id=sfid("00E", 2), manager_id=sfid("005", 1) if i > 1 else None),
        **dict(is_active=int(i != 5), hired_on=None, deleted_at=None, **_stamps(T0)),
    }


def _stage(i: int) -> dict:
    name, probability, closed, won = STAGES[i - 1]
    return {
        **SF,
        **dict(id=sfid("01J", i), seq=i, pipeline_id="default", label=name, api_name=name, display_order=i),
        **dict(probability=probability, is_closed=closed, is_won=won, is_active=1, **_stamps(T0)),
    }


def _deal(i: int) -> dict:
    """Owner missing every 1000th, a dirty amount every 450th, deleted when i % 500 == 7;
    pairs of deals share a SystemModstamp so that Id must break the tie."""
    stage, _, closed, won = STAGES[i % 4]
    return {
        **SF,
        **dict(id=sfid("006", i), seq=i, name=f"Deal {i}", owner_id=None if i % 1000 == 0 else sfid("005", i % 4 + 1)),
        **dict(amount="12k" if i % 450 == 0 else str(i * 10), currency="USD", pipeline_id="default", stage_id=stage),
        **dict(close_date=(T0.date() + timedelta(days=i % 200)).isoformat(), is_closed=closed, is_won=won),
        **dict(closed_at=None, stage_entered_at=None, last_activity_at=None, lead_id=None),
        **dict(created_at=iso_utc(T0 + timedelta(minutes=i)), modified_at=iso_utc(T0 + timedelta(seconds=i // 2))),
        "deleted_at": iso_utc(NOW) if i % 500 == 7 else None,
    }


def _history(i: int, k: int) -> dict:
    field, old, new = [("stage", "Prospecting", "Negotiation"), ("amount", "5", "50")][k]
    return {
        **SF,
        **dict(id=sfid("017", 2 * i + k), seq=2 * i + k, deal_id=sfid("006", i), field=field, old_value=old),
        **dict(new_value=new, changed_at=iso_utc(T0 + timedelta(hours=i, minutes=k))),
    }


def _activity(i: int) -> dict:
    kind = KINDS[i % 5]
    return {
        **SF,
        **dict(id=sfid("00U" if kind == "meeting" else "00T", i), seq=i, type=kind, subject=f"{kind} {i}"),
        **dict(owner_id=sfid("005", 1), deal_id=sfid("006", i), lead_id=None, occurred_at=iso_utc(T0 + timedelta(i))),
        **dict(created_at=iso_utc(T0), modified_at=iso_utc(T0 + timedelta(seconds=i * 7 % 40))),
        "deleted_at": iso_utc(NOW) if i == 3 else None,
    }


def _lead(i: int) -> dict:
    created = iso_utc(NOW - timedelta(days=i - 1))  # lead 1 arrived today
    return {
        **SF,
        **dict(id=sfid("00Q", i), seq=i, first_name="L", last_name=str(i), company="Co", email=None, status="Open"),
        **dict(lifecycle_stage=None, is_qualified=0, is_converted=0, converted_at=None, converted_deal_id=None),
        **dict(owner_id=sfid("005", 2), assigned_at=created, source="Web", created_at=created),
        **dict(modified_at=iso_utc(NOW), deleted_at=None),
    }


def _quota(i: int) -> dict:
    return {
        **SF,
        **dict(id=sfid("0J9", i), seq=i, owner_id=sfid("005", i), period_start="2024-04-01", period_end="2024-06-30"),
        **dict(amount="250000", currency="USD", **_stamps(T0)),
    }


def build_store(path: Path, clock: Clock) -> Store:
    """A small Salesforce org: 5 users, 4 stages, 4,500 deals (3 pages), history, activities."""
    store = Store(path, clock=clock)
    store.insert_many("teams", [_team(i) for i in (1, 2)])
    store.insert_many("users", [_user(i) for i in range(1, 6)])
    store.insert_many("stages", [_stage(i) for i in range(1, 5)])
    store.insert_many("deals", [_deal(i) for i in range(1, N_DEALS + 1)])
    store.insert_many("deal_history", [_history(i, k) for i in range(1, 51) for k in (0, 1)])
    store.insert_many("activities", [_activity(i) for i in range(1, 41)])
    store.insert_many("leads", [_lead(i) for i in range(1, 11)])
    store.insert_many("quotas", [_quota(i) for i in range(1, 5)])
    store.create_indexes()
    return store


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    pem = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    return ctx, str(pem)


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, clock: Clock) -> Store:
    """Read-only in tests; a test that mutates data builds its own."""
    return build_store(tmp_path_factory.mktemp("org") / "s.db", clock)


@pytest.fixture
def server(store: Store, tls: tuple[ssl.SSLContext, str], clock: Clock):
    clock.now = NOW
    with FakeSalesforce(store, session_id=TOKEN, ssl_context=tls[0]) as fake:
        yield fake


def client(fake: FakeSalesforce, pem: str, token: str = TOKEN) -> Salesforce:
    session = requests.Session()
    session.verify = pem
    session.trust_env = False
    return Salesforce(instance_url=fake.base_url, session_id=token, session=session)


@pytest.fixture
def sf(server: FakeSalesforce, tls: tuple[ssl.SSLContext, str]) -> Salesforce:
    return client(server, tls[1])


def ids(store: Store, sql: str) -> list[str]:
    return [row[0] for row in store.connect().execute(sql)]


def live_deal_ids(store: Store) -> list[str]:
    return ids(store, "SELECT id FROM deals WHERE crm = 'salesforce' AND deleted_at IS NULL ORDER BY modified_at, id")


# -- SOQL parser -----------------------------------------------------------------------------


def test_parse_select_where_order_limit() -> None:
    q = parse(
        "select Id, Owner.Name from Opportunity where (Amount > 100 or StageName = 'Won') and not IsClosed = true"
        " order by SystemModstamp desc nulls last, Id limit 10"
    )
    assert q.select == (FieldRef(("Id",), 7), FieldRef(("Owner", "Name"), 11))
    assert q.sobject == "Opportunity"
    assert isinstance(q.where, BoolOp)
    assert q.where.op == "AND"
    assert [type(c) for c in q.where.operands] == [BoolOp, Not]
    assert [(o.field.path, o.descending, o.nulls) for o in q.order_by] == [
        (("SystemModstamp",), True, "LAST"),
        (("Id",), False, None),
    ]
    assert q.limit == 10


@pytest.mark.parametrize(
    ("condition", "op", "value"),
    [
        ("Name = 'O\\'Brien \\\\ \\n'", "=", "O'Brien \\ \n"),
        ("Amount <> -5", "!=", -5),
        ("Amount >= 1.5", ">=", 1.5),
        ("IsWon = TRUE", "=", True),
        ("OwnerId = null", "=", None),
        ("CloseDate < 2024-05-01", "<", date(2024, 5, 1)),
        ("SystemModstamp > 2024-05-01T00:00:00Z", ">", datetime(2024, 5, 1, tzinfo=UTC)),
        ("SystemModstamp > 2024-05-01T00:00:00.000+0000", ">", datetime(2024, 5, 1, tzinfo=UTC)),
        ("SystemModstamp > 2024-05-01T02:00:00+02:00", ">", datetime(2024, 5, 1, tzinfo=UTC)),
        ("CreatedDate = LAST_N_DAYS:30", "=", ("LAST_N_DAYS", 30)),
        ("CreatedDate = today", "=", ("TODAY", 0)),
        ("Name LIKE 'Deal 1\\_%'", "LIKE", "Deal 1_%"),
    ],
)
def test_parse_literals(condition: str, op: str, value: object) -> None:
    where = parse(f"SELECT Id FROM Opportunity WHERE {condition}").where
    assert isinstance(where, Comparison)
    assert where.op == op
    assert not isinstance(where.value, tuple)
    assert where.value.value == value


def test_parse_in_lists_and_count() -> None:
    where = parse("SELECT Id FROM Lead WHERE Status NOT IN ('Open', null)").where
    assert isinstance(where, Comparison)
    assert where.op == "NOT IN"
    assert isinstance(where.value, tuple)
    assert [lit.value for lit in where.value] == ["Open", None]
    assert parse("SELECT COUNT() FROM Lead").select == CountAll(7)


@pytest.mark.parametrize(
    ("soql", "row", "column", "detail"),
    [
        ("SELECT FROM Opportunity", 1, 8, "unexpected token: 'FROM'"),
        ("SELECT Id, FROM Opportunity", 1, 12, "unexpected token: 'FROM'"),
        ("SELECT Id FROM Opportunity WHERE", 1, 33, "unexpected token: '<EOF>'"),
        ("SELECT Id FROM Opportunity WHERE A = 1 AND B = 2 OR C = 3", 1, 50, "unexpected token: 'OR'"),
        ("SELECT Id FROM Opportunity WHERE Name = 'abc", 1, 41, "unterminated string literal"),
        ("SELECT Id FROM Opportunity WHERE Name = 'a\\qb'", 1, 43, "Illegal character sequence '\\q'"),
        ("SELECT Id FROM Opportunity WHERE CloseDate = 2024-02-30", 1, 46, "invalid date value"),
        ("SELECT Id FROM Opportunity WHERE Id IN ()", 1, 41, "unexpected token: ')'"),
        ("SELECT Id FROM Opportunity WHERE Id IN (SELECT Id FROM Lead)", 1, 41, "semi-joins are not supported"),
        ("SELECT Id FROM Opportunity GROUP BY Id", 1, 28, "not supported by the salespulse sandbox"),
        ("SELECT COUNT(Id) FROM Opportunity", 1, 14, "only COUNT() is supported"),
        ("SELECT Id FROM Opportunity LIMIT ten", 1, 34, "unexpected token: 'ten'"),
        ("SELECT Id FROM Opportunity WHERE CloseDate = THIS_QUARTER", 1, 46, "date literal not supported"),
        ("SELECT Id\nFROM Opportunity\nWHERE Name = ", 3, 14, "unexpected token: '<EOF>'"),
    ],
)
def test_parse_errors_are_malformed_query_with_position(soql: str, row: int, column: int, detail: str) -> None:
    with pytest.raises(SoqlError) as caught:
        parse(soql)
    err = caught.value
    assert (err.code, err.row, err.column) == ("MALFORMED_QUERY", row, column)
    assert detail in err.detail
    assert f"ERROR at Row:{row}:Column:{column}\n" in err.message


# -- SOQL compiled to SQL, run against the store ---------------------------------------------------


def run(store: Store, soql: str, *, include_deleted: bool = False) -> list[str]:
    compiled = compile_query(parse(soql), SCHEMA, include_deleted=include_deleted, today=NOW.date())
    return [row[0] for row in store.connect().execute(compiled.sql, compiled.params)]


def deals_where(store: Store, sql: str) -> set[str]:
    return set(ids(store, f"SELECT id FROM deals WHERE crm = 'salesforce' AND deleted_at IS NULL AND ({sql})"))


@pytest.mark.parametrize(
    ("condition", "sql"),
    [
        ("Amount > 44000", "CAST(amount AS REAL) > 44000"),
        ("Name LIKE 'deal 1_'", "name GLOB 'Deal 1[0-9]'"),
        ("Name = 'DEAL 42'", "name = 'Deal 42'"),
        ("StageName IN ('Closed Won', 'Closed Lost')", "is_closed = 1"),
        ("StageName != 'Prospecting' AND IsClosed = false", "stage_id = 'Negotiation'"),
        ("OwnerId = null", "owner_id IS NULL"),
        ("OwnerId != '005000000000001AAA'", "owner_id IS NOT '005000000000001AAA'"),
        ("OwnerId NOT IN ('005000000000001AAA')", "owner_id IS NULL OR owner_id <> '005000000000001AAA'"),
        ("Owner.Name = 'ann lee'", "owner_id = '005000000000001AAA'"),
        ("Probability >= 60", "stage_id IN ('Negotiation', 'Closed Won')"),
        ("CloseDate = 2024-01-11", "close_date = '2024-01-11'"),
        ("SystemModstamp < 2024-01-01T00:00:05+00:00", "modified_at < '2024-01-01T00:00:05.000Z'"),
        ("CloseDate = NEXT_N_DAYS:10", "close_date BETWEEN '2024-06-02' AND '2024-06-11'"),
        ("CloseDate < TODAY", "close_date < '2024-06-01'"),
        ("NOT (Amount < 44000 OR Amount > 44100)", "CAST(amount AS REAL) BETWEEN 44000 AND 44100"),
    ],
)
def test_where_semantics(store: Store, condition: str, sql: str) -> None:
    expected = deals_where(store, sql)
    assert set(run(store, f"SELECT Id FROM Opportunity WHERE {condition}")) == expected


def test_last_n_days_includes_today(store: Store) -> None:
    got = run(store, "SELECT Id FROM Lead WHERE CreatedDate = LAST_N_DAYS:3")
    assert got == [sfid("00Q", i) for i in (1, 2, 3, 4)]


def test_order_by_and_limit_in_sql(store: Store) -> None:
    got = run(store, "SELECT Id FROM Opportunity ORDER BY SystemModstamp DESC, Id DESC LIMIT 5")
    assert got == live_deal_ids(store)[::-1][:5]


@pytest.mark.parametrize(
    ("soql", "sql"),
    [
        ("SELECT Id, TaskSubtype FROM Task ORDER BY SystemModstamp, Id", "1 = 1 ORDER BY modified_at, id"),
        (
            "SELECT Id FROM Task WHERE Subject LIKE 'call%' OR Subject = 'task 2' ORDER BY SystemModstamp DESC LIMIT 3",
            "(subject LIKE 'call%' OR subject = 'task 2') ORDER BY modified_at DESC LIMIT 3",
        ),
    ],
)
def test_tasks_merge_three_activity_types_in_order(store: Store, soql: str, sql: str) -> None:
    expected = ids(
        store,
        "SELECT id FROM activities WHERE crm = 'salesforce' AND type IN ('call', 'email', 'task')"
        f" AND deleted_at IS NULL AND {sql}",
    )
    assert run(store, soql) == expected
    assert "UNION ALL" in compile_query(parse(soql), SCHEMA, include_deleted=False, today=NOW.date()).tail


@pytest.mark.parametrize(
    ("soql", "code", "column", "detail"),
    [
        ("SELECT Id FROM Foo", "INVALID_TYPE", 16, "sObject type 'Foo' is not supported."),
        ("SELECT Id, Foo FROM Opportunity", "INVALID_FIELD", 12, "No such column 'Foo' on entity 'Opportunity'."),
        ("SELECT Owner.Foo FROM Opportunity", "INVALID_FIELD", 8, "No such column 'Foo' on entity 'User'."),
        ("SELECT Bad.Name FROM Opportunity", "INVALID_FIELD", 8, "Didn't understand relationship 'Bad'"),
        ("SELECT SystemModstamp FROM OpportunityFieldHistory", "INVALID_FIELD", 8, "No such column"),
        ("SELECT Id FROM User WHERE IsDeleted = false", "INVALID_FIELD", 27, "No such column 'IsDeleted'"),
        ("SELECT Id, ID FROM Lead", "MALFORMED_QUERY", 12, "duplicate field selected: Id"),
        (
            "SELECT Id FROM Opportunity WHERE SystemModstamp > '2024-01-01'",
            "INVALID_FIELD",
            51,
            "must be of type dateTime and should not be enclosed in quotes",
        ),
        ("SELECT Id FROM Opportunity WHERE CloseDate > 2024-01-01T00:00:00Z", "INVALID_FIELD", 46, "type date"),
        ("SELECT Id FROM Opportunity WHERE Name = 5", "INVALID_FIELD", 41, "type string and should be enclosed"),
    ],
)
def test_compile_errors(soql: str, code: str, column: int, detail: str) -> None:
    with pytest.raises(SoqlError) as caught:
        compile_query(parse(soql), SCHEMA, include_deleted=False, today=NOW.date())
    assert (caught.value.code, caught.value.column) == (code, column)
    assert detail in caught.value.detail


# -- over HTTPS with the real SDK ---------------------------------------------------------------


def test_query_all_pages_through_every_live_deal(sf: Salesforce, server: FakeSalesforce, store: Store) -> None:
    first = sf.query(f"SELECT {DEAL_FIELDS} FROM Opportunity ORDER BY SystemModstamp, Id")
    expected = live_deal_ids(store)
    assert (first["totalSize"], first["done"], len(first["records"])) == (len(expected), False, 2000)
    assert re.fullmatch(r"/services/data/v59\.0/query/01g\w{15}-2000", first["nextRecordsUrl"])
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    third = sf.query_more(second["nextRecordsUrl"], identifier_is_url=True)
    assert (len(second["records"]), second["done"]) == (2000, False)
    assert (len(third["records"]), third["done"], "nextRecordsUrl" in third) == (len(expected) - 4000, True, False)
    got = [r["Id"] for page in (first, second, third) for r in page["records"]]
    assert got == expected
    assert server.open_cursors == 0


def test_query_all_iter_and_query_all_agree_with_the_store(sf: Salesforce, store: Store) -> None:
    soql = "SELECT Id FROM Opportunity"
    assert sorted(r["Id"] for r in sf.query_all_iter(soql)) == sorted(live_deal_ids(store))
    assert sf.query_all(soql)["totalSize"] == len(live_deal_ids(store))


def test_query_all_endpoint_adds_deleted_rows(sf: Salesforce, store: Store) -> None:
    records = sf.query_all("SELECT Id, IsDeleted FROM Opportunity", include_deleted=True)["records"]
    deleted = {r["Id"] for r in records if r["IsDeleted"]}
    assert deleted == set(ids(store, "SELECT id FROM deals WHERE deleted_at IS NOT NULL"))
    assert len(records) == N_DEALS
    live = sf.query_all("SELECT Id FROM Opportunity WHERE IsDeleted = true")
    assert live["totalSize"] == 0


def test_incremental_window_by_system_modstamp(sf: Salesforce, store: Store) -> None:
    cursor = "2024-01-01T00:10:00Z"
    page = sf.query(
        f"SELECT Id, SystemModstamp FROM Opportunity WHERE SystemModstamp >= {cursor}"
        " ORDER BY SystemModstamp, Id LIMIT 7"
    )
    expected = ids(
        store,
        "SELECT id FROM deals WHERE crm = 'salesforce' AND deleted_at IS NULL"
        " AND modified_at >= '2024-01-01T00:10:00.000Z' ORDER BY modified_at, id LIMIT 7",
    )
    assert [r["Id"] for r in page["records"]] == expected
    assert (page["totalSize"], page["done"]) == (7, True)
    assert page["records"][0]["SystemModstamp"] == "2024-01-01T00:10:00.000+0000"


def test_records_are_serialised_like_salesforce(sf: Salesforce) -> None:
    soql = (
        "SELECT Id, Amount, IsClosed, CloseDate, CreatedDate, Probability, Owner.Name, Owner.Email"
        " FROM Opportunity WHERE Id IN ('006000000000001AAA', '006000000000450AAA', '006000000001000AAA')"
    )
    by_id = {r["Id"]: r for r in sf.query(soql)["records"]}
    one = by_id["006000000000001AAA"]
    assert one["attributes"] == {
        "type": "Opportunity",
        "url": "/services/data/v59.0/sobjects/Opportunity/006000000000001AAA",
    }
    assert (one["Amount"], one["IsClosed"], one["CloseDate"], one["Probability"]) == (10.0, False, "2024-01-02", 60.0)
    assert one["CreatedDate"] == "2024-01-01T00:01:00.000+0000"
    assert dict(one["Owner"]) == {
        "attributes": {"type": "User", "url": "/services/data/v59.0/sobjects/User/005000000000002AAA"},
        "Name": "Bob Roe",
        "Email": "bob@acme.test",
    }
    assert list(one) == ["attributes", "Id", "Amount", "IsClosed", "CloseDate", "CreatedDate", "Probability", "Owner"]
    assert by_id["006000000000450AAA"]["Amount"] == "12k"  # dirty on purpose: served as stored
    assert by_id["006000000001000AAA"]["Owner"] is None


def test_history_values_keep_their_types(sf: Salesforce) -> None:
    records = sf.query(
        "SELECT Field, OldValue, NewValue, Opportunity.Name FROM OpportunityFieldHistory"
        " WHERE OpportunityId = '006000000000001AAA' ORDER BY CreatedDate"
    )["records"]
    assert [(r["Field"], r["OldValue"], r["NewValue"]) for r in records] == [
        ("StageName", "Prospecting", "Negotiation"),
        ("Amount", 5.0, 50.0),
    ]
    assert records[0]["Opportunity"]["Name"] == "Deal 1"


def test_tasks_and_events_split_activities(sf: Salesforce, store: Store) -> None:
    tasks = sf.query_all("SELECT Id, TaskSubtype, Status FROM Task")["records"]
    events = sf.query_all("SELECT Id, StartDateTime FROM Event")["records"]
    assert {r["TaskSubtype"] for r in tasks} == {"Call", "Email", "Task"}
    assert len(tasks) == store.count(
        "activities", "salesforce", "type IN ('call','email','task') AND deleted_at IS NULL"
    )
    assert all(r["Id"].startswith("00U") for r in events)
    assert len(events) == store.count("activities", "salesforce", "type = 'meeting' AND deleted_at IS NULL")


def test_count_query(sf: Salesforce, store: Store) -> None:
    result = sf.query("SELECT COUNT() FROM Opportunity WHERE IsClosed = true")
    assert result == {
        "totalSize": store.count("deals", "salesforce", "is_closed = 1 AND deleted_at IS NULL"),
        "done": True,
        "records": [],
    }


@pytest.mark.parametrize(("requested", "served"), [("batchSize=500", 500), ("batchSize=50", 200), ("x", 2000)])
def test_batch_size_header(sf: Salesforce, requested: str, served: int) -> None:
    page = sf.query("SELECT Id FROM Opportunity", headers={"Sforce-Query-Options": requested})
    assert len(page["records"]) == served
    assert page["nextRecordsUrl"].endswith(f"-{served}")


def test_limit_above_page_size_pages_then_stops(sf: Salesforce) -> None:
    records = sf.query_all("SELECT Id FROM Opportunity LIMIT 2500")
    assert records["totalSize"] == 2500


def test_api_usage_header_counts_requests(sf: Salesforce, server: FakeSalesforce) -> None:
    sf.query("SELECT Id FROM User")
    sf.query("SELECT Id FROM User")
    usage = sf.api_usage["api-usage"]
    assert (usage.used, usage.total) == (2, 15000)
    assert server.api_usage == 2


def test_describe_and_versions(sf: Salesforce, server: FakeSalesforce, tls: tuple[ssl.SSLContext, str]) -> None:
    names = {o["name"] for o in sf.describe()["sobjects"]}
    assert {"Opportunity", "ForecastingQuota", "OpportunityFieldHistory"} <= names
    quota = sf.ForecastingQuota.describe()
    fields = {f["name"]: f for f in quota["fields"]}
    assert fields["QuotaOwnerId"]["referenceTo"] == ["User"]
    assert fields["QuotaOwnerId"]["relationshipName"] == "QuotaOwner"
    assert fields["QuotaAmount"]["type"] == "currency"
    session = requests.Session()
    session.trust_env = False
    versions = session.get(f"{server.base_url}/services/data/", verify=tls[1], timeout=5).json()
    assert {"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"} in versions


# -- errors as the SDK sees them -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "exc", "status", "code"),
    [
        (lambda sf: sf.query("SELEC Id FROM Lead"), SalesforceMalformedRequest, 400, "MALFORMED_QUERY"),
        (lambda sf: sf.query("SELECT Foo FROM Lead"), SalesforceMalformedRequest, 400, "INVALID_FIELD"),
        (lambda sf: sf.query("SELECT Id FROM Foo"), SalesforceMalformedRequest, 400, "INVALID_TYPE"),
        (lambda sf: sf.restful("query/"), SalesforceMalformedRequest, 400, "MALFORMED_QUERY"),
        (lambda sf: sf.restful("nothing/here"), SalesforceResourceNotFound, 404, "NOT_FOUND"),
        (lambda sf: sf.restful("sobjects/", method="POST"), SalesforceGeneralError, 405, "METHOD_NOT_ALLOWED"),
        (
            lambda sf: sf.query_more("/services/data/v99.0/query/?q=SELECT+Id+FROM+User", identifier_is_url=True),
            SalesforceResourceNotFound,
            404,
            "NOT_FOUND",
        ),
        (lambda sf: sf.Foo.describe(), SalesforceResourceNotFound, 404, "NOT_FOUND"),
        (
            lambda sf: sf.query_more("/services/data/v59.0/query/01gBOGUS-2000", identifier_is_url=True),
            SalesforceMalformedRequest,
            400,
            "INVALID_QUERY_LOCATOR",
        ),
    ],
)
def test_error_answers_map_to_sdk_exceptions(sf: Salesforce, call, exc, status: int, code: str) -> None:
    with pytest.raises(exc) as caught:
        call(sf)
    assert caught.value.status == status
    assert caught.value.content[0]["errorCode"] == code


def test_wrong_token_is_an_expired_session(server: FakeSalesforce, tls: tuple[ssl.SSLContext, str]) -> None:
    with pytest.raises(SalesforceExpiredSession) as caught:
        client(server, tls[1], token="stolen").query("SELECT Id FROM User")
    assert caught.value.content == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_daily_limit_refuses_requests(sf: Salesforce, server: FakeSalesforce) -> None:
    server.daily_limit = 1
    sf.query("SELECT Id FROM User")
    with pytest.raises(SalesforceRefusedRequest) as caught:
        sf.query("SELECT Id FROM User")
    assert caught.value.content == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]


@pytest.mark.parametrize(
    ("kind", "options", "exc", "status", "code"),
    [
        ("rate_limit", {}, SalesforceRefusedRequest, 403, "REQUEST_LIMIT_EXCEEDED"),
        ("request_limit", {}, SalesforceRefusedRequest, 403, "REQUEST_LIMIT_EXCEEDED"),
        ("expired_session", {}, SalesforceExpiredSession, 401, "INVALID_SESSION_ID"),
        ("server_error", {"status": 503}, SalesforceGeneralError, 503, "SERVER_UNAVAILABLE"),
        ("server_error", {"status": 500}, SalesforceGeneralError, 500, "UNKNOWN_EXCEPTION"),
    ],
)
def test_faults_answer_like_salesforce(
    sf: Salesforce, server: FakeSalesforce, kind: str, options: dict, exc: type, status: int, code: str
) -> None:
    server.faults.arm(kind, path="/query", **options)
    with pytest.raises(exc) as caught:
        sf.query("SELECT Id FROM User")
    assert (caught.value.status, caught.value.content[0]["errorCode"]) == (status, code)
    assert len(sf.query("SELECT Id FROM User")["records"]) == 5  # one shot: the next call works


@pytest.mark.parametrize(
    ("kind", "exc"),
    [("truncate", requests.exceptions.JSONDecodeError), ("drop", requests.exceptions.ConnectionError)],
)
def test_broken_answers_surface_as_errors(sf: Salesforce, server: FakeSalesforce, kind: str, exc: type) -> None:
    server.faults.arm(kind, path="/query")
    with pytest.raises(exc):
        sf.query("SELECT Id FROM User")


# -- paging under trouble ----------------------------------------------------------------------------


def test_session_expires_mid_paging(server: FakeSalesforce, tls: tuple[ssl.SSLContext, str], store: Store) -> None:
    sf = client(server, tls[1])
    first = sf.query("SELECT Id FROM Opportunity ORDER BY Id")
    server.expire_session()
    with pytest.raises(SalesforceExpiredSession):
        sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    server.renew_session("renewed")
    renewed = client(server, tls[1], token="renewed")
    rest = renewed.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert rest["records"][0]["Id"] == sorted(live_deal_ids(store))[2000]


@pytest.mark.parametrize("fault", ["truncate", "server_error"])
def test_retrying_a_failed_page_continues_without_gap(
    sf: Salesforce, server: FakeSalesforce, store: Store, fault: str
) -> None:
    first = sf.query("SELECT Id FROM Opportunity ORDER BY Id")
    server.faults.arm(fault, path=r"/query/01g")
    with pytest.raises((SalesforceGeneralError, requests.exceptions.JSONDecodeError)):
        sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    third = sf.query_more(second["nextRecordsUrl"], identifier_is_url=True)
    got = [r["Id"] for page in (first, second, third) for r in page["records"]]
    assert got == sorted(live_deal_ids(store))


@pytest.mark.parametrize("scenario", ["idle 16 minutes", "exhausted", "released by newer cursors", "wrong offset"])
def test_gone_locators_answer_invalid_query_locator(
    server: FakeSalesforce, tls: tuple[ssl.SSLContext, str], clock: Clock, scenario: str
) -> None:
    sf = client(server, tls[1])
    url = sf.query("SELECT Id FROM Opportunity")["nextRecordsUrl"]
    if scenario == "idle 16 minutes":
        clock.now = NOW + timedelta(minutes=16)
    elif scenario == "exhausted":
        url = sf.query_more(url, identifier_is_url=True)["nextRecordsUrl"]
        assert sf.query_more(url, identifier_is_url=True)["done"]
    elif scenario == "released by newer cursors":
        for _ in range(server.max_cursors):
            sf.query("SELECT Id FROM Opportunity")
    else:
        url = url.replace("-2000", "-1999")
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query_more(url, identifier_is_url=True)
    assert caught.value.content == [{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}]


def test_pages_come_from_one_snapshot(tmp_path: Path, tls: tuple[ssl.SSLContext, str]) -> None:
    store = build_store(tmp_path / "s.db", Clock())
    with FakeSalesforce(store, session_id=TOKEN, ssl_context=tls[0]) as fake:
        sf = client(fake, tls[1])
        first = sf.query("SELECT Id FROM Opportunity ORDER BY Id")
        store.delete("deals", "salesforce", [sfid("006", i) for i in range(3010, 3020)])
        rest = list(sf.query_all_iter("SELECT Id FROM Opportunity ORDER BY Id"))
        second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
        third = sf.query_more(second["nextRecordsUrl"], identifier_is_url=True)
    store.close()
    assert len(first["records"]) + len(second["records"]) + len(third["records"]) == first["totalSize"]
    assert len(rest) == first["totalSize"] - 10


# -- logging in: SOAP login() and the OAuth 2.0 JWT bearer flow -------------------------------------

API_USER, API_PASSWORD, API_TOKEN = "api@acme.test", "s3cret&<pass>'\"", "Tok3nTok3nTok3nTok3nTok3"
APP = "3MVG9fakeConsumerKey.for.tests"
SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"
PARTNER = "{urn:partner.soap.sforce.com}"
TOKEN_KEYS = {"access_token", "scope", "instance_url", "id", "token_type", "issued_at", "signature"}


APP_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture
def org(server: FakeSalesforce) -> FakeSalesforce:
    server.add_user(API_USER, API_PASSWORD, API_TOKEN)
    server.register_app(APP, public_pem(APP_KEY))
    return server


def soap_login(fake: FakeSalesforce, pem: str, username: str, password: str) -> requests.Response:
    body = (
        '<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
        'envelope/" xmlns:urn="urn:partner.soap.sforce.com"><soapenv:Body><urn:login>'
        f"<urn:username>{xml_escape(username)}</urn:username><urn:password>{xml_escape(password)}</urn:password>"
        "</urn:login></soapenv:Body></soapenv:Envelope>"
    )
    headers = {"Content-Type": "text/xml", "SOAPAction": "login"}
    return requests.post(f"{fake.base_url}/services/Soap/u/59.0", data=body.encode(), headers=headers, verify=pem)


def assertion(key: object, **claims: object) -> str:
    payload = {"iss": APP, "sub": API_USER, "aud": "https://login.salesforce.com", "exp": int(NOW.timestamp()) + 180}
    payload |= claims
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm="RS256")  # type: ignore[arg-type]


def token(fake: FakeSalesforce, pem: str, data: dict[str, str]) -> requests.Response:
    return requests.post(f"{fake.base_url}/services/oauth2/token", data=data, verify=pem)


def bearer(grant: str) -> dict[str, str]:
    return {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": grant}


def test_soap_login_answers_a_login_result_whose_session_reads_the_api(
    org: FakeSalesforce, tls: tuple[ssl.SSLContext, str]
) -> None:
    # Usernames ignore case; the password is followed by the security token.
    answer = soap_login(org, tls[1], API_USER.upper(), API_PASSWORD + API_TOKEN)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/xml")
    result = ElementTree.fromstring(answer.content).find(f"{SOAP}Body/{PARTNER}loginResponse/{PARTNER}result")
    assert result is not None
    fields = {child.tag.removeprefix(PARTNER): child.text for child in result}
    assert fields["serverUrl"] == f"{org.base_url}/services/Soap/u/59.0/{ORG_ID}"
    assert fields["metadataServerUrl"] == f"{org.base_url}/services/Soap/m/59.0/{ORG_ID}"
    assert fields["sandbox"] == fields["passwordExpired"] == "false"
    assert fields["userId"].startswith("005")
    assert fields["sessionId"].startswith(ORG_ID + "!")
    assert result.findtext(f"{PARTNER}userInfo/{PARTNER}userName") == API_USER
    assert client(org, tls[1], token=fields["sessionId"]).query("SELECT Id FROM User")["totalSize"] == len(USERS)


def test_sdk_password_login_escapes_the_password_and_finds_the_instance(
    org: FakeSalesforce, tls: tuple[ssl.SSLContext, str]
) -> None:
    session, routing = session_to(org.base_url)
    session.verify = tls[1]
    session_id, instance = SalesforceLogin(
        username=API_USER, password=API_PASSWORD, security_token=API_TOKEN, session=session
    )
    assert instance == f"127.0.0.1:{org.port}"
    assert routing.rerouted == ["https://login.salesforce.com/services/Soap/u/59.0"]
    assert client(org, tls[1], token=session_id).query("SELECT Id FROM User")["totalSize"] == len(USERS)


@pytest.mark.parametrize(
    ("username", "password"),
    [
        (API_USER, "wrong" + API_TOKEN),
        (API_USER, API_PASSWORD),  # no security token
        (API_USER, API_PASSWORD + "Tok3nTok3nTok3nTok3nXXXX"),
        ("nobody@acme.test", API_PASSWORD + API_TOKEN),
    ],
    ids=["wrong password", "token missing", "wrong token", "unknown user"],
)
def test_soap_login_refused_is_the_invalid_login_fault(
    org: FakeSalesforce, tls: tuple[ssl.SSLContext, str], username: str, password: str
) -> None:
    answer = soap_login(org, tls[1], username, password)
    assert answer.status_code == 500
    fault = ElementTree.fromstring(answer.content).find(f"{SOAP}Body/{SOAP}Fault")
    assert fault is not None
    assert fault.findtext("faultcode") == "sf:INVALID_LOGIN"
    assert fault.findtext("faultstring") == f"INVALID_LOGIN: {INVALID_LOGIN}"
    detail = "{urn:fault.partner.soap.sforce.com}"
    assert fault.findtext(f"detail/{detail}LoginFault/{detail}exceptionCode") == "INVALID_LOGIN"
    assert password not in answer.text


@pytest.mark.parametrize("body", [b"not xml", b'<?xml version="1.0"?><a/>'])
def test_soap_body_that_is_no_login_call_is_a_client_fault(
    org: FakeSalesforce, tls: tuple[ssl.SSLContext, str], body: bytes
) -> None:
    answer = requests.post(f"{org.base_url}/services/Soap/u/59.0", data=body, verify=tls[1])
    assert answer.status_code == 500
    assert ElementTree.fromstring(answer.content).findtext(f"{SOAP}Body/{SOAP}Fault/faultcode") == "soapenv:Client"


@pytest.mark.parametrize("exp", [int(NOW.timestamp()) + 180, str(int(NOW.timestamp()) + 180)], ids=["int", "string"])
def test_jwt_bearer_token_answer_and_its_session(
    org: FakeSalesforce, tls: tuple[ssl.SSLContext, str], exp: object
) -> None:
    answer = token(org, tls[1], bearer(assertion(APP_KEY, exp=exp)))  # the SDK sends exp as a string
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert set(body) == TOKEN_KEYS
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == org.base_url
    assert re.fullmatch(rf"https://login\.salesforce\.com/id/{ORG_ID}/005\w{{15}}", body["id"])
    assert body["issued_at"] == str(int(NOW.timestamp() * 1000))
    secret = org._apps[APP].consumer_secret.encode()
    signed = hmac.new(secret, (body["id"] + body["issued_at"]).encode(), hashlib.sha256).digest()
    assert base64.b64decode(body["signature"]) == signed
    assert client(org, tls[1], token=body["access_token"]).query("SELECT Id FROM User")["totalSize"] == len(USERS)


PAST = int((NOW - timedelta(seconds=1)).timestamp())


@pytest.mark.parametrize(
    ("data", "error", "description"),
    [
        ({}, "unsupported_grant_type", "grant type not supported"),
        ({"grant_type": "password", "username": API_USER}, "unsupported_grant_type", "grant type not supported"),
        ({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"}, "invalid_grant", "invalid assertion"),
        (bearer("not.a.jwt"), "invalid_grant", "invalid assertion"),
        (bearer(assertion(OTHER_KEY)), "invalid_grant", "invalid assertion"),
        (
            bearer(jwt.encode({"iss": APP, "sub": API_USER}, "k" * 32, algorithm="HS256")),
            "invalid_grant",
            "invalid assertion",
        ),
        (bearer(assertion(APP_KEY, exp=None)), "invalid_grant", "invalid assertion"),
        (bearer(assertion(APP_KEY, iss="3MVG9unknown")), "invalid_client_id", "client identifier invalid"),
        (bearer(assertion(APP_KEY, aud="https://test.salesforce.com")), "invalid_grant", "audience is invalid"),
        (bearer(assertion(APP_KEY, exp=PAST)), "invalid_grant", "expired authorization code"),
        (bearer(assertion(APP_KEY, sub="nobody@acme.test")), "invalid_grant", "user hasn't approved this consumer"),
    ],
    ids=[
        "no grant type",
        "password grant",
        "no assertion",
        "malformed assertion",
        "signed with another key",
        "HS256",
        "no exp",
        "unknown client id",
        "production audience only",
        "expired",
        "unknown user",
    ],
)
def test_token_endpoint_refusals_are_oauth_errors(
    org: FakeSalesforce,
    tls: tuple[ssl.SSLContext, str],
    data: dict[str, str],
    error: str,
    description: str,
) -> None:
    answer = token(org, tls[1], data)
    assert answer.status_code == 400
    assert answer.json() == {"error": error, "error_description": description}


def test_a_sandbox_org_takes_the_test_audience_only(org: FakeSalesforce, tls: tuple[ssl.SSLContext, str]) -> None:
    org.sandbox_org = True
    assert token(org, tls[1], bearer(assertion(APP_KEY))).json()["error_description"] == "audience is invalid"
    answer = token(org, tls[1], bearer(assertion(APP_KEY, aud="https://test.salesforce.com")))
    assert answer.json()["id"].startswith("https://test.salesforce.com/id/")
    login = ElementTree.fromstring(soap_login(org, tls[1], API_USER, API_PASSWORD + API_TOKEN).content)
    assert login.findtext(f"{SOAP}Body/{PARTNER}loginResponse/{PARTNER}result/{PARTNER}sandbox") == "true"


def test_connected_app_with_an_uploaded_certificate(org: FakeSalesforce, tls: tuple[ssl.SSLContext, str]) -> None:
    leaf = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert("salespulse-jwt", key_type=trustme.KeyType.RSA)
    org.register_app("3MVG9certApp", leaf.cert_chain_pems[0].bytes().decode())
    grant = assertion(leaf.private_key_pem.bytes(), iss="3MVG9certApp")
    assert token(org, tls[1], bearer(grant)).status_code == 200
    with pytest.raises(TypeError, match="RSA certificate"):
        org.register_app("3MVG9ecApp", trustme.CA().issue_cert("ec").cert_chain_pems[0].bytes().decode())


def test_expiring_the_session_ends_issued_sessions_and_a_new_login_works(
    org: FakeSalesforce, tls: tuple[ssl.SSLContext, str]
) -> None:
    issued = token(org, tls[1], bearer(assertion(APP_KEY))).json()["access_token"]
    assert client(org, tls[1]).query("SELECT Id FROM User")["totalSize"] == len(USERS)  # the given session lives on
    org.expire_session()
    for session_id in (issued, TOKEN):
        with pytest.raises(SalesforceExpiredSession):
            client(org, tls[1], token=session_id).query("SELECT Id FROM User")
    again = token(org, tls[1], bearer(assertion(APP_KEY))).json()["access_token"]
    assert client(org, tls[1], token=again).query("SELECT Id FROM User")["totalSize"] == len(USERS)


def test_password_change_resets_the_security_token(org: FakeSalesforce, tls: tuple[ssl.SSLContext, str]) -> None:
    org.set_password(API_USER, "new-password")
    assert soap_login(org, tls[1], API_USER, "new-password" + API_TOKEN).status_code == 500
