"""On the sandbox company, `sync` then `check` posts messages that name every planted problem and
nothing else, and a second `check` posts nothing; with the problems switched off, nothing is posted.

The commands run as a user runs them (service.main), against the sandbox's fake CRMs and Slack;
what is counted is what the fake Slack received.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

import service
from alerts.blocks import escape
from models.database import open_warehouse
from models.tables import opportunities, reps, stages
from sandbox.company import SCALES
from sandbox.runner import Sandbox
from sandbox.slack import FakeSlack

ROOT = Path(__file__).resolve().parents[2]
ANCHOR = date(2026, 11, 20)
RULE_OF = {  # planted problem -> the default rule that must announce it
    "behind_quota": "quota-attainment",
    "ahead_of_quota": "quota-attainment",
    "stalled_stage": "stalled-stage",
    "conversion_drop": "stage-conversion-drop",
    "uneven_leads": "lead-distribution",
    "no_activity": "deal-no-activity",
    "pushed_close_dates": "close-date-slipped",
}


@dataclass
class Company:
    box: Sandbox
    engine: Engine
    env: dict[str, str]

    @property
    def slack(self) -> FakeSlack:
        return self.box.slack

    def run(self, *args: str) -> int:
        saved = dict(os.environ)
        try:
            os.environ.update(self.env)
            return service.main(list(args))
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def check(self) -> int:
        return self.run("check", "--as-of", self.box.truth.generator["anchor_end"])


def company(tmp: Path, planted: bool) -> Iterator[Company]:
    problems = None if planted else set()
    with Sandbox(tmp, scale=SCALES["small"], seed=1, anchor=ANCHOR, problems=problems) as box:
        url = f"sqlite:///{tmp}/warehouse.db"
        env = {
            **{k: v for k, v in os.environ.items() if not k.upper().startswith("SALESPULSE_")},
            **box.env(),
            "SALESPULSE_DATABASE__URL": url,
            "SALESPULSE_SYNC__LOOKBACK_S": "0",
            "SALESPULSE_SLACK__POST_INTERVAL_S": "0",
            "SALESPULSE_RULES__PATHS": str(ROOT / "rules.d"),
        }
        found = Company(box, open_warehouse(url), env)
        assert found.run("sync") == 0
        yield found
        found.engine.dispose()


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Company]:
    yield from company(tmp_path_factory.mktemp("alerts-planted"), planted=True)


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Company]:
    yield from company(tmp_path_factory.mktemp("alerts-healthy"), planted=False)


def expected_names(c: Company) -> dict[str, set[str]]:
    """Rule id -> the subject names its message must carry, from the ground truth and the warehouse."""
    want: dict[str, set[str]] = {}
    with c.engine.connect() as conn:
        rep_name = dict(conn.execute(select(reps.c.id, reps.c.name)).all())
        stage_label = {(r.source, r.api_name): r.label for r in conn.execute(select(stages))}
        owner_of = dict(conn.execute(select(opportunities.c.id, opportunities.c.owner_id)).all())
    for problem, items in c.box.truth.problems.items():
        names = want.setdefault(RULE_OF[problem], set())
        for p in items:
            if "rep_id" in p:
                names.add(rep_name[f"{p['crm']}:{p['rep_id']}"])
            elif problem in ("stalled_stage", "conversion_drop"):
                names.add(stage_label[(p["crm"], p.get("stage_id") or p["from_stage"])])
            elif problem == "uneven_leads":
                names.add(p["team_name"])
            else:  # deal-level problems are announced per owner, with the deals as samples
                names.add(rep_name[owner_of[f"{p['crm']}:{p['deal_id']}"]])
    return want


def announced(slack: FakeSlack) -> dict[str, tuple[int, set[str]]]:
    """Rule id -> (subjects its message counts in the header, the subjects it names)."""
    out = {}
    for m in slack.messages():
        if m.thread_ts is not None:
            continue
        rule_id = re.search(r"rule `([^`]+)`", str(m.blocks)).group(1)
        assert rule_id not in out, f"two messages for {rule_id}"
        count = int(re.search(r"\((\d+) [a-z ]+\)", m.blocks[0]["text"]["text"]).group(1))
        named = {
            b["text"]["text"][1:].split("*", 1)[0]
            for b in m.blocks
            if b["type"] == "section" and b["text"]["text"].startswith("*")
        }
        out[rule_id] = (count, named)
    return out


def test_check_posts_every_planted_problem_and_nothing_else_then_nothing(planted: Company) -> None:
    assert planted.check() == 0
    want = expected_names(planted)
    got = announced(planted.slack)
    for rule_id, names in want.items():  # every planted problem, by the rule that owns it
        count, named = got[rule_id]
        assert named == {escape(n) for n in names}, rule_id
        assert count == len(names), rule_id
    # nothing else: other rules may speak only of the planted reps (peer comparison of the same reps)
    planted_reps = {escape(n) for n in want["quota-attainment"]}
    for rule_id in set(got) - set(want):
        count, named = got[rule_id]
        assert named <= planted_reps, rule_id
        assert count == len(named), rule_id
    before = len(planted.slack.messages())
    assert planted.check() == 0
    assert len(planted.slack.messages()) == before


def test_a_healthy_company_gets_no_message(healthy: Company) -> None:
    assert healthy.check() == 0
    assert healthy.slack.messages() == []


def test_digest_posts_the_teams_with_their_chart_and_open_alerts(planted: Company, capsys) -> None:
    assert planted.check() == 0  # the open alerts the digest lists (a no-op after the test above: nothing new)
    before = len(planted.slack.messages())
    assert planted.run("digest", "--dry-run") == 0
    assert "Sales digest" in capsys.readouterr().out
    assert len(planted.slack.messages()) == before
    assert planted.run("digest") == 0
    new = planted.slack.messages()[before:]
    [digest] = [m for m in new if m.blocks]
    text = str(digest.blocks)
    with planted.engine.connect() as conn:
        teams = {name for (name,) in conn.execute(select(reps.c.team).distinct()) if name}
    assert all(f"*{escape(team)}*: " in text for team in teams)
    assert "blended" in text
    assert "*Open alerts (" in text
    assert "`quota-attainment`: 3" in text
    [chart] = [f for m in new for f in m.files]
    assert chart.content.startswith(b"\x89PNG")
