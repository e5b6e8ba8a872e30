"""Bulk API 2.0 query jobs for the fake Salesforce (Bulk API 2.0 and Bulk API Developer
Guide, "Bulk API 2.0 Query", API v47.0+).

- "Create a Query Job" ``POST .../jobs/query`` ``{"operation": "query"|"queryAll", "query",
  "contentType": "CSV", "columnDelimiter", "lineEnding"}`` answers the job info in state
  ``UploadComplete``. The query is checked when the job is created (a bad query is a 400
  with the REST error code); COUNT() is refused, as Bulk API 2.0 does.
- "Get Information About a Query Job" ``GET .../jobs/query/{id}``: the first poll finds the
  job ``InProgress`` and starts running it in the background, as Salesforce does, so a
  million-row job never holds up a poll; later polls find it ``InProgress`` until it is done
  (and for the first ``busy_polls`` polls, to test a client's patience), then
  ``JobComplete``, or ``Failed`` (with ``errorMessage``) or ``Aborted`` when a fault plan
  doomed it.
- "Get Results for a Query Job" ``GET .../jobs/query/{id}/results?locator=&maxRecords=``:
  CSV with a header row in every set, headers ``Sforce-NumberOfRecords`` and
  ``Sforce-Locator`` (the string ``null`` after the last set). As the guide says, a
  locator stays valid while the job exists, so a set can be fetched again (a retry).
  Results of another API version than the job's answer 409.
- "Abort a Query Job" ``PATCH .../jobs/query/{id}`` ``{"state": "Aborted"}`` and "Delete a
  Query Job" ``DELETE .../jobs/query/{id}`` (204, no body; only a finished job).

Why results are copied at completion: a job's results are a snapshot kept for days, so
they go, already written as CSV lines, into a private temporary SQLite database per job
(a million rows are never in memory) and a set is one keyset range of it.

CSV as Salesforce writes it: every value quoted, null as an empty value, ``true`` /
``false``, numbers as text, dateTimes ``2024-05-01T12:00:00.000Z``, dates ``YYYY-MM-DD``,
relationship fields as columns named ``UserRole.Name``. Error codes the guide does not
name (INVALIDJOB, INVALIDJOBSTATE, INVALIDLOCATOR) follow the Bulk API's older ones.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import itertools
import re
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sandbox.soql import Column, Compiled, Schema, SoqlError, translate
from sandbox.store import Store, iso_utc

DELIMITERS = {"BACKQUOTE": "`", "CARET": "^", "COMMA": ",", "PIPE": "|", "SEMICOLON": ";", "TAB": "\t"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
OPERATIONS = ("query", "queryAll")
FINISHED = ("JobComplete", "Failed", "Aborted")
JOB_OWNER = "005000000000000AAA"  # the integration user the session belongs to
FAILED_MESSAGE = "QUERY_TIMEOUT : Your query request was running for too long."

_NUMERIC = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\Z")


def sf_number(value: Any) -> Any:
    """SQL function: a stored number as a float; a stored string that is not one is served
    as it is (dirty data on purpose). Shared by the REST and the Bulk serialisers."""
    if isinstance(value, str):
        return float(value) if _NUMERIC.match(value) else value
    return None if value is None else float(value)


class BulkError(Exception):
    """A request Salesforce answers with this status and ``[{"errorCode", "message"}]``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _not_found() -> BulkError:
    return BulkError(404, "NOT_FOUND", "The requested resource does not exist")


def _csv_value(type_: str, expr: str) -> str:
    """SQL for the text Salesforce writes in a CSV cell for a field of this describe type."""
    if type_ == "boolean":
        return f"CASE {expr} WHEN 0 THEN 'false' WHEN 1 THEN 'true' END"
    if type_ in ("currency", "double", "percent"):
        return f"sf_number({expr})"
    if type_ == "int":
        return f"CAST({expr} AS INTEGER)"
    return expr


def csv_columns(compiled: Compiled) -> tuple[list[str], list[str]]:
    """The CSV header and the SQL of each cell, skipping the ids that only REST's
    ``attributes`` need (the record's own and each related record's)."""
    columns = iter(compiled.columns[1:])
    header: list[str] = []
    cells: list[str] = []
    for item in compiled.output:
        if isinstance(item, Column):
            header.append(item.name)
            cells.append(_csv_value(item.type, next(columns)))
            continue
        next(columns)
        for column in item.columns:
            header.append(f"{item.name}.{column.name}")
            cells.append(_csv_value(column.type, next(columns)))
    return header, cells


def _line_writer(delimiter: str, line_ending: str) -> Callable[..., str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=line_ending, quoting=csv.QUOTE_ALL)

    def line(*values: Any) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    return line


def _locator(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def _offset(locator: str) -> int:
    try:
        return int(base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BulkError(400, "INVALIDLOCATOR", f"Invalid locator: {locator}") from None


@dataclass
class QueryJob:
    id: str
    operation: str
    compiled: Compiled
    version: str
    delimiter: str
    line_ending: str
    created: str
    state: str = "UploadComplete"
    fate: str = "JobComplete"  # how the job ends: JobComplete, or Failed / Aborted when doomed
    error_message: str | None = None
    polls: int = 0
    total: int = 0
    results: sqlite3.Connection | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    runner: threading.Thread | None = None

    def info(self, *, detailed: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.compiled.sobject.name,
            "createdById": JOB_OWNER,
            "createdDate": self.created,
            "systemModstamp": self.created,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.version),
        }
        if detailed:
            body["jobType"] = "V2Query"
        body["lineEnding"] = self.line_ending
        body["columnDelimiter"] = self.delimiter
        if detailed:
            body.update(numberRecordsProcessed=self.total, retries=0, totalProcessingTime=0)
        if self.error_message:
            body["errorMessage"] = self.error_message
        return body

    def run(self, store: Store) -> None:
        """Copy the results, as CSV lines, into the job's own temporary database."""
        conn = store.new_connection()
        conn.row_factory = None
        conn.create_function("sf_number", 1, sf_number, deterministic=True)
        conn.create_function(
            "sf_csv_line", -1, _line_writer(DELIMITERS[self.delimiter], LINE_ENDINGS[self.line_ending])
        )
        _, cells = csv_columns(self.compiled)
        try:
            conn.execute("ATTACH DATABASE '' AS job")
            conn.execute("CREATE TABLE job.lines (pos INTEGER PRIMARY KEY, line TEXT NOT NULL)")
            conn.execute(
                f"INSERT INTO job.lines (line) SELECT sf_csv_line({', '.join(cells)}) {self.compiled.tail}",
                self.compiled.params,
            )
            self.total = conn.execute("SELECT COUNT(*) FROM job.lines").fetchone()[0]
        except BaseException:
            conn.close()
            raise
        self.results = conn

    def page(self, offset: int, limit: int) -> list[str]:
        assert self.results is not None
        rows = self.results.execute("SELECT line FROM job.lines WHERE pos > ? ORDER BY pos LIMIT ?", (offset, limit))
        return [row[0] for row in rows]

    def header(self) -> str:
        header, _ = csv_columns(self.compiled)
        return _line_writer(DELIMITERS[self.delimiter], LINE_ENDINGS[self.line_ending])(*header)

    def close(self) -> None:
        if self.results is not None:
            self.results.close()
            self.results = None


class QueryJobs:
    """The org's Bulk API 2.0 query jobs."""

    def __init__(self, store: Store, schema: Schema, *, max_records: int = 50_000) -> None:
        self.store = store
        self.schema = schema
        self.max_records = max_records  # the most records one result set holds, whatever maxRecords asks
        self.busy_polls = 1  # polls that find a job InProgress before it ends
        self._jobs: dict[str, QueryJob] = {}
        self._lock = threading.Lock()
        self._seq = itertools.count(1)

    def create(self, body: Any, version: str, now: datetime) -> QueryJob:
        if not isinstance(body, Mapping):
            raise BulkError(400, "INVALIDJOB", "The request body must be a JSON object describing the query job")
        operation = body.get("operation")
        if operation not in OPERATIONS:
            raise BulkError(400, "INVALIDJOB", f"Invalid operation '{operation}': a query job is query or queryAll")
        options = {
            "contentType": (body.get("contentType", "CSV"), ("CSV",)),
            "columnDelimiter": (body.get("columnDelimiter", "COMMA"), tuple(DELIMITERS)),
            "lineEnding": (body.get("lineEnding", "LF"), tuple(LINE_ENDINGS)),
        }
        for name, (value, allowed) in options.items():
            if value not in allowed:
                raise BulkError(400, "INVALIDJOB", f"Invalid {name} '{value}': expected one of {', '.join(allowed)}")
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise BulkError(400, "INVALIDJOB", "A query job needs a SOQL query")
        try:
            compiled = translate(
                query, self.schema, include_deleted=operation == "queryAll", today=self.store.clock().date()
            )
        except SoqlError as exc:
            raise BulkError(400, exc.code, exc.message) from None
        if compiled.count_only:
            raise BulkError(400, "INVALIDJOB", "Aggregate functions such as COUNT() are not supported by Bulk API 2.0")
        job = QueryJob(
            id=f"750{next(self._seq):012d}AAA",
            operation=operation,
            compiled=compiled,
            version=version,
            delimiter=options["columnDelimiter"][0],
            line_ending=options["lineEnding"][0],
            created=iso_utc(now).replace("Z", "+0000"),
        )
        with self._lock:
            self._jobs[job.id] = job
        return job

    def get(self, job_id: str) -> QueryJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise _not_found()
        return job

    def doom(self, job_id: str, fate: str) -> None:
        """Make this job end Failed or Aborted instead of completing (an armed fault)."""
        self.get(job_id).fate = fate

    def poll(self, job_id: str) -> QueryJob:
        """The job's state, moved one step on: queued -> InProgress -> how it ends."""
        job = self.get(job_id)
        with job.lock:
            job.polls += 1
            if job.state == "UploadComplete":
                job.state = "InProgress"
                if job.fate == "JobComplete":
                    job.runner = threading.Thread(target=job.run, args=(self.store,), name=job.id, daemon=True)
                    job.runner.start()
            elif job.state == "InProgress" and job.polls > self.busy_polls:
                if job.runner is not None:
                    # A poll answers within 0.2 s: a client whose waits are simulated (tests) still
                    # gives a small job real time to finish.
                    job.runner.join(timeout=0.2)
                    if job.runner.is_alive():
                        return job
                if job.fate == "JobComplete" and job.results is None:
                    job.fate, job.error_message = "Failed", "InternalServerError: the query could not be completed"
                elif job.fate == "Failed":
                    job.error_message = FAILED_MESSAGE
                job.state = job.fate
        return job

    def results(self, job_id: str, version: str, locator: str | None, max_records: str | None) -> tuple[str, str, int]:
        """One result set: the CSV text, the next locator ('null' after the last) and its size."""
        job = self.get(job_id)
        if version != job.version:
            raise BulkError(
                409, "INVALIDJOBSTATE", f"Get the results with the API version that created the job ({job.version})"
            )
        limit = self.max_records
        if max_records is not None:
            if not max_records.isdigit() or int(max_records) < 1:
                raise BulkError(400, "INVALIDJOB", f"maxRecords must be a positive integer, got '{max_records}'")
            limit = min(int(max_records), limit)
        offset = _offset(locator) if locator else 0
        with job.lock:
            if job.state != "JobComplete":
                raise BulkError(400, "INVALIDJOBSTATE", f"Results come once the job is JobComplete; it is {job.state}")
            lines = job.page(offset, limit)
            end = offset + len(lines)
            next_locator = _locator(end) if end < job.total else "null"
            return job.header() + "".join(lines), next_locator, len(lines)

    def abort(self, job_id: str, body: Any) -> QueryJob:
        job = self.get(job_id)
        if not isinstance(body, Mapping) or body.get("state") != "Aborted":
            raise BulkError(400, "INVALIDJOBSTATE", "A query job can only be set to the state Aborted")
        with job.lock:
            if job.state in FINISHED:
                raise BulkError(400, "INVALIDJOBSTATE", f"Aborting a job in the state {job.state} is not allowed")
            job.state = "Aborted"
        return job

    def delete(self, job_id: str) -> None:
        job = self.get(job_id)
        with job.lock:
            if job.state not in FINISHED:
                raise BulkError(400, "INVALIDJOBSTATE", f"Abort the job before deleting it: it is {job.state}")
            job.close()
        with self._lock:
            self._jobs.pop(job_id, None)

    def infos(self) -> list[dict[str, Any]]:
        with self._lock:
            return [job.info() for job in self._jobs.values()]

    def close(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
            self._jobs.clear()
        for job in jobs:
            with job.lock:
                job.close()
