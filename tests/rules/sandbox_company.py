"""A sandbox company generated at small scale and synced into a warehouse through the real
connectors (the helpers of tests/sync), with its quota file loaded, for rule acceptance tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine

from models.clock import utc_now
from models.database import open_warehouse
from models.settings import CompanySettings, load_settings
from sandbox.company import SCALES, GroundTruth
from sandbox.runner import Sandbox
from sync.quota_file import load_quota_file
from tests.sync.test_both_crms import sync_all


@dataclass(frozen=True)
class Case:
    seed: int
    anchor: date  # the company's today (the generator anchors it anywhere)
    planted: bool  # problems on (all of them) or off

    @property
    def name(self) -> str:
        return f"seed{self.seed}-{self.anchor}-{'planted' if self.planted else 'healthy'}"


@dataclass
class Synced:
    engine: Engine
    truth: GroundTruth
    company: CompanySettings

    @property
    def now(self) -> datetime:
        """The anchor's end of day: the instant the ground truth is measured at."""
        return datetime.fromisoformat(self.truth.generator["anchor_end"].replace("Z", "+00:00"))


def synced_company(case: Case, tmp: Path, url: str) -> Iterator[Synced]:
    """Generate, serve and sync ``case`` into ``url`` (both CRMs, then the quota file); yield it."""
    problems = None if case.planted else set()
    saved = dict(os.environ)
    with Sandbox(tmp / case.name, scale=SCALES["small"], seed=case.seed, anchor=case.anchor, problems=problems) as box:
        try:
            os.environ.update(box.env())
            os.environ["SALESPULSE_SYNC__LOOKBACK_S"] = "0"
            os.environ["SALESPULSE_DATABASE__URL"] = url
            sync_all(url)
            settings = load_settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        engine = open_warehouse(url)
        with engine.begin() as conn:
            load_quota_file(conn, box.quota_file, settings.company, utc_now())
        rates = {code: Decimal(str(rate)) for code, rate in box.truth.generator["fx_rates"].items()}
        yield Synced(engine, box.truth, CompanySettings(fx_rates=rates))
        engine.dispose()
