"""``rules backtest``: what the rules would have raised at each past instant, to see a threshold's noise.

Each instant is evaluated as ``check --as-of`` would (the evaluators reconstruct the past from
the warehouse's history), one snapshot per instant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Engine

from models.settings import CompanySettings
from rules.check import evaluate_rules
from rules.findings import Evaluation
from rules.kinds import KINDS
from rules.model import Kind, Rule

MAX_INSTANTS = 1000  # a typo in --every (1m for 1w) must not start a day-long run


def backtest_instants(start: datetime, end: datetime, every: timedelta) -> list[datetime]:
    """The instants to evaluate; ValueError when the range is empty, reversed or too fine."""
    if end < start:
        raise ValueError("--to is before --from")
    if every <= timedelta(0):
        raise ValueError("--every must be positive, e.g. 1d or 1w")
    count = int((end - start) / every) + 1
    if count > MAX_INSTANTS:
        raise ValueError(f"{count:,} instants from --from to --to every {every}; at most {MAX_INSTANTS:,}")
    return [start + every * i for i in range(count)]


def backtest(
    rules: Sequence[Rule],
    engine: Engine,
    company: CompanySettings,
    moments: Sequence[datetime],
    *,
    kinds: Mapping[str, Kind] = KINDS,
) -> list[tuple[datetime, list[Evaluation]]]:
    """The evaluations of ``rules`` at each instant, in order."""
    return [(at, evaluate_rules(rules, engine, company, at, kinds=kinds)) for at in moments]
