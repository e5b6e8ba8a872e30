"""The fake Salesforce's Bulk API 2.0 query jobs, driven by simple-salesforce's own bulk2 code."""

from __future__ import annotations

import csv
import io
import ssl
import time
from collections.abc import Iterator

import pytest
import requests
import trustme
from simple_salesforce import Salesforce
from simple_salesforce.bulk2 import Operation
from simple_salesforce.exceptions import (
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceOperationError,
    SalesforceResourceNotFound,
)

from sandbox.salesforce import FakeSalesforce
from sandbox.store import Store
from tests.sandbox.test_salesforce_fake import NOW, TOKEN, Clock, build_store, client

DEALS = "SELECT Id, Name, Amount, IsClosed, CloseDate, Owner.Name, SystemModstamp, IsDeleted FROM Opportunity"
ORDERED = DEALS + " ORDER BY SystemModstamp, Id"


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, clock: Clock) -> Store:
    return build_store(tmp_path_factory.mktemp("org") / "s.db", clock)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    pem = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    return ctx, str(pem)


@pytest.fixture
def server(store: Store, tls: tuple[ssl.SSLContext, str], clock: Clock) -> Iterator[FakeSalesforce]:
    clock.now = NOW
    with FakeSalesforce(store, session_id=TOKEN, ssl_context=tls[0]) as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def sf(server: FakeSalesforce, tls: tuple[ssl.SSLContext, str]) -> Salesforce:
    return client(server, tls[1])


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def completed_job(sf: Salesforce, soql: str = ORDERED, operation: Operation = Operation.query_all) -> str:
    bulk = sf.bulk2.Opportunity._client
    job_id = bulk.create_job(operation, soql)["id"]
    bulk.wait_for_job(job_id, True, 0)
    return job_id


def test_sdk_query_all_pages_through_the_same_records_as_rest(sf: Salesforce, store: Store) -> None:
    pages = list(sf.bulk2.Opportunity.query_all(ORDERED, max_records=1000, wait=0))
    assert len(pages) == 5  # 4,500 deals, deleted ones included
    bulk_ids = [row["Id"] for page in pages for row in rows(page)]
    rest_ids = [r["Id"] for r in sf.query_all(ORDERED, include_deleted=True)["records"]]
    assert bulk_ids == rest_ids
    assert len(bulk_ids) == store.connect().execute("SELECT COUNT(*) FROM deals").fetchone()[0]


def test_sdk_query_leaves_out_deleted_records(sf: Salesforce) -> None:
    pages = sf.bulk2.Opportunity.query(DEALS.replace(", IsDeleted", ""), wait=0)
    got = {row["Id"] for page in pages for row in rows(page)}
    assert got == {r["Id"] for r in sf.query_all(DEALS.replace(", IsDeleted", ""))["records"]}


def test_values_are_written_like_salesforce_csv(sf: Salesforce) -> None:
    soql = (
        "SELECT Id, Amount, IsClosed, CloseDate, CreatedDate, Probability, Owner.Name FROM Opportunity"
        " WHERE Id IN ('006000000000001AAA', '006000000000450AAA', '006000000001000AAA') ORDER BY Id"
    )
    (page,) = sf.bulk2.Opportunity.query(soql, wait=0)
    header, first = page.split("\n")[:2]
    assert header == '"Id","Amount","IsClosed","CloseDate","CreatedDate","Probability","Owner.Name"'
    assert first == '"006000000000001AAA","10.0","false","2024-01-02","2024-01-01T00:01:00.000Z","60.0","Bob Roe"'
    by_id = {row["Id"]: row for row in rows(page)}
    assert by_id["006000000000450AAA"]["Amount"] == "12k"  # dirty on purpose: written as stored
    assert by_id["006000000001000AAA"]["Owner.Name"] == ""  # no owner: an empty value


def test_job_lifecycle(sf: Salesforce, server: FakeSalesforce) -> None:
    bulk = sf.bulk2.Opportunity._client
    created = bulk.create_job(Operation.query_all, ORDERED)
    assert (created["state"], created["operation"], created["object"]) == ("UploadComplete", "queryAll", "Opportunity")
    assert (created["contentType"], created["lineEnding"], created["columnDelimiter"]) == ("CSV", "LF", "COMMA")
    # The job runs in the background once polled: InProgress until it is done, then JobComplete for good.
    states = [bulk.get_job(created["id"], True)["state"]]
    while states[-1] == "InProgress" and len(states) < 500:
        time.sleep(0.01)
        states.append(bulk.get_job(created["id"], True)["state"])
    assert (states[0], states[-1]) == ("InProgress", "JobComplete")
    assert bulk.get_job(created["id"], True)["state"] == "JobComplete"
    info = bulk.get_job(created["id"], True)
    assert (info["jobType"], info["numberRecordsProcessed"]) == ("V2Query", 4500)
    # The SDK's delete_job parses the 204's empty body as JSON; the request itself is what Salesforce expects.
    with pytest.raises(requests.exceptions.JSONDecodeError):
        bulk.delete_job(created["id"], True)
    assert server.bulk_jobs == []


def test_abort_a_running_job(sf: Salesforce) -> None:
    bulk = sf.bulk2.Opportunity._client
    job_id = bulk.create_job(Operation.query, DEALS)["id"]
    assert bulk.abort_job(job_id, True)["state"] == "Aborted"
    assert bulk.get_job(job_id, True)["state"] == "Aborted"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        bulk.abort_job(job_id, True)
    assert caught.value.content[0]["errorCode"] == "INVALIDJOBSTATE"


def test_locators_page_and_can_be_read_again(sf: Salesforce) -> None:
    bulk = sf.bulk2.Opportunity._client
    job_id = completed_job(sf)
    first = bulk.get_query_results(job_id, "", 2000)
    second = bulk.get_query_results(job_id, first["locator"], 2000)
    again = bulk.get_query_results(job_id, first["locator"], 2000)
    last = bulk.get_query_results(job_id, second["locator"], 2000)
    assert [first["number_of_records"], second["number_of_records"], last["number_of_records"]] == [2000, 2000, 500]
    assert again == second
    assert last["locator"] == ""  # the SDK's reading of "Sforce-Locator: null"
    assert all(page["records"].startswith('"Id","Name",') for page in (first, second, last))


def test_result_headers_and_server_cap(sf: Salesforce, server: FakeSalesforce) -> None:
    server.bulk.max_records = 300
    job_id = completed_job(sf)
    url = f"{sf.bulk2_url}query/{job_id}/results"
    answer = sf.session.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, params={"maxRecords": 1000})
    assert answer.headers["Content-Type"] == "text/csv"
    assert answer.headers["Sforce-NumberOfRecords"] == "300"
    assert answer.headers["Sforce-Locator"] not in ("", "null")


@pytest.mark.parametrize(
    ("delimiter", "line_ending", "separator", "terminator"),
    [("TAB", "LF", "\t", "\n"), ("SEMICOLON", "CRLF", ";", "\r\n")],
)
def test_column_delimiter_and_line_ending(
    sf: Salesforce, delimiter: str, line_ending: str, separator: str, terminator: str
) -> None:
    bulk = sf.bulk2.Opportunity._client
    job_id = bulk.create_job(Operation.query, "SELECT Id, Name FROM Opportunity LIMIT 2", delimiter, line_ending)["id"]
    bulk.wait_for_job(job_id, True, 0)
    text = bulk.get_query_results(job_id)["records"]
    assert text.startswith(f'"Id"{separator}"Name"{terminator}')
    assert text.count(terminator) == 3


def _post(sf: Salesforce, body: dict) -> requests.Response:
    return sf.session.post(f"{sf.bulk2_url}query", json=body, headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"operation": "insert", "query": DEALS}, 400, "INVALIDJOB"),
        ({"operation": "query"}, 400, "INVALIDJOB"),
        ({"operation": "query", "query": DEALS, "contentType": "JSON"}, 400, "INVALIDJOB"),
        ({"operation": "query", "query": DEALS, "lineEnding": "CR"}, 400, "INVALIDJOB"),
        ({"operation": "query", "query": "SELECT COUNT() FROM Lead"}, 400, "INVALIDJOB"),
        ({"operation": "query", "query": "SELEC Id FROM Lead"}, 400, "MALFORMED_QUERY"),
        ({"operation": "query", "query": "SELECT Foo FROM Lead"}, 400, "INVALID_FIELD"),
        ({"operation": "query", "query": "SELECT Id FROM Foo"}, 400, "INVALID_TYPE"),
    ],
)
def test_bad_jobs_are_refused(sf: Salesforce, body: dict, status: int, code: str) -> None:
    answer = _post(sf, body)
    assert answer.status_code == status
    assert answer.json()[0]["errorCode"] == code


def test_sdk_error_classes_for_unknown_job_and_early_results(sf: Salesforce) -> None:
    bulk = sf.bulk2.Opportunity._client
    with pytest.raises(SalesforceResourceNotFound) as caught:
        bulk.get_job("750000000000999AAA", True)
    assert caught.value.content == [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]
    job_id = bulk.create_job(Operation.query, DEALS)["id"]
    with pytest.raises(SalesforceMalformedRequest) as early:
        bulk.get_query_results(job_id)
    assert early.value.content[0]["errorCode"] == "INVALIDJOBSTATE"
    bulk.wait_for_job(job_id, True, 0)
    with pytest.raises(SalesforceMalformedRequest) as bad:
        bulk.get_query_results(job_id, "not-a-locator")
    assert bad.value.content[0]["errorCode"] == "INVALIDLOCATOR"


@pytest.mark.parametrize(("kind", "state"), [("job_failed", "Failed"), ("job_aborted", "Aborted")])
def test_doomed_jobs_end_failed_or_aborted(sf: Salesforce, server: FakeSalesforce, kind: str, state: str) -> None:
    server.faults.arm(kind, path=r"/jobs/query$", method="POST")
    with pytest.raises(SalesforceOperationError, match="Job failure"):
        list(sf.bulk2.Opportunity.query_all(ORDERED, wait=0))
    (job,) = server.bulk_jobs
    assert job["state"] == state
    assert ("errorMessage" in job) == (state == "Failed")


def test_results_server_error_is_one_shot(sf: Salesforce, server: FakeSalesforce) -> None:
    job_id = completed_job(sf)
    server.faults.arm("server_error", path=r"/results", status=503)
    bulk = sf.bulk2.Opportunity._client
    with pytest.raises(SalesforceGeneralError) as caught:
        bulk.get_query_results(job_id)
    assert (caught.value.status, caught.value.content[0]["errorCode"]) == (503, "SERVER_UNAVAILABLE")
    assert bulk.get_query_results(job_id, "", 10)["number_of_records"] == 10
