"""Spans between two instants, and an instant's UTC day, in SQL, the same on SQLite and PostgreSQL.

SQLite keeps instants as text and measures with ``julianday``; PostgreSQL subtracts
``timestamptz`` values into an interval. Rule queries need days (time in stage, time to
first touch) computed where the rows are, so the aggregate, not the rows, reaches Python;
the sync's per-day rollups need the day.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Date, Float, Integer
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class days_between(FunctionElement[float]):
    """``end - start`` in fractional days."""

    type = Float()
    inherit_cache = True
    name = "days_between"


class whole_days_between(FunctionElement[int]):
    """``end - start`` in whole days, rounded down (histogram buckets)."""

    type = Integer()
    inherit_cache = True
    name = "whole_days_between"


def _args(element: FunctionElement[Any], compiler: Any, **kw: Any) -> tuple[str, str]:
    start, end = list(element.clauses)
    return compiler.process(start, **kw), compiler.process(end, **kw)


@compiles(days_between, "sqlite")
def _days_sqlite(element: days_between, compiler: Any, **kw: Any) -> str:
    start, end = _args(element, compiler, **kw)
    return f"(julianday({end}) - julianday({start}))"


@compiles(days_between)
def _days_pg(element: days_between, compiler: Any, **kw: Any) -> str:
    start, end = _args(element, compiler, **kw)
    return f"(EXTRACT(EPOCH FROM ({end}) - ({start})) / 86400.0)"


@compiles(whole_days_between, "sqlite")
def _whole_sqlite(element: whole_days_between, compiler: Any, **kw: Any) -> str:
    start, end = _args(element, compiler, **kw)
    return f"CAST(julianday({end}) - julianday({start}) AS INTEGER)"


@compiles(whole_days_between)
def _whole_pg(element: whole_days_between, compiler: Any, **kw: Any) -> str:
    start, end = _args(element, compiler, **kw)
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM ({end}) - ({start})) / 86400.0) AS INTEGER)"


class dates_apart(FunctionElement[int]):
    """``end - start`` between two dates, in days."""

    type = Integer()
    inherit_cache = True
    name = "dates_apart"


@compiles(dates_apart, "sqlite")
def _dates_sqlite(element: dates_apart, compiler: Any, **kw: Any) -> str:
    start, end = _args(element, compiler, **kw)
    return f"CAST(julianday({end}) - julianday({start}) AS INTEGER)"


@compiles(dates_apart)
def _dates_pg(element: dates_apart, compiler: Any, **kw: Any) -> str:
    start, end = _args(element, compiler, **kw)
    return f"(({end}) - ({start}))"


class utc_day(FunctionElement[Any]):
    """The UTC calendar day of an instant (a ``Date`` column compares with it on both databases)."""

    type = Date()
    inherit_cache = True
    name = "utc_day"


@compiles(utc_day, "sqlite")
def _day_sqlite(element: utc_day, compiler: Any, **kw: Any) -> str:
    (value,) = list(element.clauses)
    return f"date({compiler.process(value, **kw)})"


@compiles(utc_day)
def _day_pg(element: utc_day, compiler: Any, **kw: Any) -> str:
    (value,) = list(element.clauses)
    return f"CAST(timezone('UTC', {compiler.process(value, **kw)}) AS DATE)"
