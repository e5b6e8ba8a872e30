"""Reading one SOQL query through a Salesforce Bulk API 2.0 query job, page by page.

A first full read of a big object through REST costs one API call per 2,000 records; a
Bulk API 2.0 job costs a handful of calls for the whole object and runs on Salesforce's
side. The job runs ``queryAll`` (so deletions still arrive as ``IsDeleted`` rows) with the
stream's ``ORDER BY``, which Bulk API 2.0 accepts (it only disables PK chunking, per
"Understanding Bulk API 2.0 Query"), so pages come in replication-key order as the
engine needs.

Why not simple-salesforce's ``sf.bulk2.<Object>.query_all()``: its generator keeps the
result locator to itself, so a result set that fails cannot be fetched again (one 503
would mean running the whole job again, although Salesforce serves a locator as often as
asked); its ``wait_for_job`` polls for up to 24 hours with ``time.sleep``, which we can
neither bound nor replace in tests; none of its requests take a timeout; and its
``delete_job`` parses the 204's empty body as JSON. So the same requests (the SDK's
``bulk2_url``, JSON body, Bearer header) go through the SDK's ``call_salesforce``, which
raises the same exception classes as its REST calls, each through our retry policy.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from typing import Any

import requests
from simple_salesforce.util import call_salesforce

from connectors.errors import StreamFailed, TransientError
from connectors.salesforce_client import SalesforceClient
from models.errors import FatalError

log = logging.getLogger("salespulse.connectors.salesforce")

PAGE_RECORDS = 2_000  # records per result set (maxRecords), as a REST page: memory stays flat
POLL_FIRST_S = 1.0
POLL_MAX_S = 30.0
MAX_WAIT_S = 3600.0  # a query job still running after this long is aborted


def bulk_pages(client: SalesforceClient, soql: str, what: str) -> Iterator[list[dict[str, str]]]:
    """The query's rows as CSV dicts (column -> text), one result set per page."""
    job_id = _json(client, "POST", "query", what, json=_job(soql))["id"]
    _wait(client, job_id, what)
    locator = ""
    while True:
        rows, locator = _result_set(client, job_id, locator, what)
        yield rows
        if locator in ("", "null"):
            break
    _delete(client, job_id, what)


def _job(soql: str) -> dict[str, Any]:
    return {
        "operation": "queryAll",
        "query": soql,
        "contentType": "CSV",
        "columnDelimiter": "COMMA",
        "lineEnding": "LF",
    }


def _send(client: SalesforceClient, method: str, path: str, **kwargs: Any) -> requests.Response:
    # Read at each try: a re-authentication replaces client.sf and its session id.
    headers = {
        "Authorization": f"Bearer {client.sf.session_id}",
        "Content-Type": "application/json",
        "Accept": "text/csv" if path.endswith("/results") else "application/json",
    }
    url = client.sf.bulk2_url + path
    return call_salesforce(url, method, client.session, headers, timeout=client.settings.timeout_s, **kwargs)


def _json(client: SalesforceClient, method: str, path: str, what: str, **kwargs: Any) -> Any:
    return client.call(lambda: _send(client, method, path, **kwargs).json(), what)


def _wait(client: SalesforceClient, job_id: str, what: str) -> None:
    """Poll the job with a growing pause until it ends; a job that ends otherwise than
    complete, or runs past MAX_WAIT_S, stops the stream (its cursor stays)."""
    waited, pause = 0.0, POLL_FIRST_S
    while True:
        info = _json(client, "GET", f"query/{job_id}", what)
        state = info.get("state")
        if state == "JobComplete":
            return
        if state in ("Failed", "Aborted"):
            reason = info.get("errorMessage") or "no reason given (aborted by a user or another client?)"
            raise StreamFailed(
                f"Salesforce Bulk API 2.0 job {job_id} ended {state}: {reason}; the stream's cursor is unchanged and "
                "the next run tries again; to read this object through REST instead set salesforce.bulk_threshold = 0",
                request=what,
            )
        if waited >= MAX_WAIT_S:
            _abort(client, job_id, what)
            raise StreamFailed(
                f"Salesforce Bulk API 2.0 job {job_id} was still {state} after {waited:.0f} s and was aborted; "
                "Salesforce may be overloaded: try later, or set salesforce.bulk_threshold = 0 to read through REST",
                request=what,
            )
        pause = min(pause, MAX_WAIT_S - waited)
        client.policy.sleep(pause)
        waited += pause
        pause = min(pause * 2, POLL_MAX_S)


def _result_set(client: SalesforceClient, job_id: str, locator: str, what: str) -> tuple[list[dict[str, str]], str]:
    """One result set and the locator of the next. The records counted against the
    ``Sforce-NumberOfRecords`` header turn a cut answer into a retry, not a silent gap."""
    params: dict[str, Any] = {"maxRecords": PAGE_RECORDS}
    if locator:
        params["locator"] = locator

    def fetch() -> tuple[list[dict[str, str]], str]:
        response = _send(client, "GET", f"query/{job_id}/results", params=params)
        try:
            rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))
        except (csv.Error, UnicodeDecodeError):
            raise TransientError("Salesforce sent an unreadable Bulk API 2.0 result set", request=what) from None
        announced = response.headers.get("Sforce-NumberOfRecords")
        if announced is not None and int(announced) != len(rows):
            raise TransientError(
                f"Salesforce sent {len(rows)} of the {announced} records of a Bulk API 2.0 result set", request=what
            )
        return rows, response.headers.get("Sforce-Locator", "")

    return client.call(fetch, what)


def _abort(client: SalesforceClient, job_id: str, what: str) -> None:
    try:
        _json(client, "PATCH", f"query/{job_id}", what, json={"state": "Aborted"})
    except FatalError as exc:
        log.warning("could not abort Salesforce Bulk API 2.0 job %s: %s", job_id, exc)


def _delete(client: SalesforceClient, job_id: str, what: str) -> None:
    """Free the job's stored results (they count against the org's daily bulk storage)."""
    try:
        client.call(lambda: _send(client, "DELETE", f"query/{job_id}"), what)
    except FatalError as exc:
        log.warning(
            "could not delete Salesforce Bulk API 2.0 job %s (Salesforce drops it within days): %s", job_id, exc
        )
