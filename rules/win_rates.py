"""Historical win rate of each funnel stage, measured in the warehouse (not the CRM's probability field).

Why a chain and not a cohort: following every deal closed in the last year back through its
stage history joins each closed deal to its stage changes (seconds at a million deals), and a
cohort of closed deals is biased toward deals that lost fast. Instead the stage moves of the
last ``days`` before T are counted (moves of deals deleted by T or stale left out), per pair of
stages, and read as an absorbing Markov chain per pipeline::

    q(s, t) = moves s -> t / moves out of s       (t an open stage of the same pipeline)
    r(s)    = moves s -> a won stage / moves out of s
    p(s)    = r(s) + sum_t q(s, t) * p(t)         solved as (I - Q) p = r

p(s) is the chance that a deal in stage s is eventually won, with every recent move (skips and
moves back included) counting once. A stage with fewer than ``min_history`` moves out of it
takes its pipeline's share of closing moves that were wins (won / closed in the window), and a
pipeline with fewer than that many closings the company's.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import select

from models.tables import stages
from rules.model import Scope, Warehouse
from rules.stage_history import moves

Move = tuple[str, str, str]  # source, from stage, to stage (api names)


@dataclass(frozen=True)
class StageRow:
    source: str
    pipeline: str
    api_name: str
    is_closed: bool
    is_won: bool


@dataclass(frozen=True)
class WinRates:
    """p(s) per (source, pipeline, stage api name); unknown stages get their pipeline's or the company's rate."""

    by_stage: Mapping[tuple[str, str, str], float]
    by_pipeline: Mapping[tuple[str, str], float]
    company: float

    def rate(self, source: str, pipeline: str, stage: str) -> float:
        found = self.by_stage.get((source, pipeline, stage))
        if found is not None:
            return found
        return self.by_pipeline.get((source, pipeline), self.company)


def solve(stage_rows: Iterable[StageRow], moves: Mapping[Move, int], min_history: int) -> WinRates:
    """The chain above, from the stages and the counted moves (shared with the naive benchmark)."""
    pipelines: dict[tuple[str, str], list[StageRow]] = defaultdict(list)
    where: dict[tuple[str, str], StageRow] = {}
    for row in stage_rows:
        pipelines[(row.source, row.pipeline)].append(row)
        where.setdefault((row.source, row.api_name), row)
    out_of: dict[tuple[str, str, str], dict[StageRow, int]] = defaultdict(lambda: defaultdict(int))
    for (source, before, after), n in moves.items():
        origin, target = where.get((source, before)), where.get((source, after))
        if origin is None or target is None or origin.pipeline != target.pipeline or before == after:
            continue
        out_of[(source, origin.pipeline, before)][target] += n
    closings = {key: [0, 0] for key in pipelines}
    for (source, pipeline, _), targets in out_of.items():
        for target, n in targets.items():
            if target.is_closed:
                closings[(source, pipeline)][0] += n * target.is_won
                closings[(source, pipeline)][1] += n
    won_all = sum(w for w, _ in closings.values())
    closed_all = sum(c for _, c in closings.values())
    company = won_all / closed_all if closed_all else 0.0
    by_pipeline = {key: (w / c if c >= min_history else company) for key, (w, c) in closings.items()}
    by_stage: dict[tuple[str, str, str], float] = {}
    for key, rows in pipelines.items():
        by_stage.update(_chain(key, [r for r in rows if not r.is_closed], out_of, by_pipeline[key], min_history))
    return WinRates(by_stage, by_pipeline, company)


def _chain(
    key: tuple[str, str],
    open_rows: list[StageRow],
    out_of: Mapping[tuple[str, str, str], Mapping[StageRow, int]],
    fallback: float,
    min_history: int,
) -> dict[tuple[str, str, str], float]:
    index = {row.api_name: i for i, row in enumerate(open_rows)}
    size = len(open_rows)
    q, r = np.zeros((size, size)), np.zeros(size)
    for i, row in enumerate(open_rows):
        targets = out_of.get((*key, row.api_name), {})
        total = sum(targets.values())
        if total < min_history:
            r[i] = fallback
            continue
        for target, n in targets.items():
            if target.is_closed:
                r[i] += n * target.is_won / total
            else:
                q[i, index[target.api_name]] += n / total
    try:
        p = np.linalg.solve(np.eye(size) - q, r) if size else r
    except np.linalg.LinAlgError:  # moves that never leave a loop of open stages: no chain to read
        p = np.full(size, fallback)
    return {(*key, row.api_name): float(min(1.0, max(0.0, p[i]))) for i, row in enumerate(open_rows)}


def win_rates(warehouse: Warehouse, now: datetime, days: int, min_history: int) -> WinRates:
    """Once per check: quota_attainment, pipeline_coverage and peer_outlier all weigh open deals with them."""
    key = ("win_rates", now, days, min_history)
    return warehouse.shared(key, lambda: _win_rates(warehouse, now, days, min_history))


def _win_rates(warehouse: Warehouse, now: datetime, days: int, min_history: int) -> WinRates:
    """Counts the moves of the ``days`` before ``now`` (the sync's per-day rollups: rules/stage_history.py)
    and solves the chain."""
    counted: Counter[Move] = Counter()
    for (source, _pipeline, before, after), n in moves(
        warehouse, now - timedelta(days=days), now, now, Scope()
    ).items():
        counted[(source, before, after)] += n
    s = stages.c
    query = select(s.source, s.pipeline, s.api_name, s.is_closed, s.is_won)
    rows = [StageRow(*row) for row in warehouse.conn.execute(query)]
    return solve(rows, counted, min_history)
