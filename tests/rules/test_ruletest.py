"""Rule unit tests in YAML: compact data as a sync would write it, expected vs got, located file errors."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from models.settings import CompanySettings
from models.tables import activities, close_date_changes, leads, opportunities, quotas, reps, stage_changes
from rules.ruletest import default_test_paths, format_run, run_rule_tests
from rules.testdata import DataIn, write_data
from tests.rules.toy_kinds import TOY_KINDS

RULES = """\
rules:
  - id: too-many-open
    kind: open_deals
    severity: {warn: 2, critical: 3}
  - id: idle
    kind: open_deals
    params: {note_reps_without_deals: true}
  - id: broken
    kind: failing
    enabled: false
"""

TESTS = """\
rule_files: [../toy.yaml]
company: {timezone: Europe/Berlin}
data:
  reps:
    - {name: Ana Lima, team: West}
    - {name: Bo, team: West}
tests:
  - name: three open deals is critical
    at: 2026-03-15T10:00:00Z
    data:
      deals:
        - {name: Acme, owner: Ana Lima, amount: 1000, path: [[Prospecting, -60], [Qualification, -30]], count: 3}
        - {name: Won, owner: Bo, amount: 1000, path: [[Prospecting, -60], [Closed Won, -3]]}
    expect:
      - {rule: too-many-open, subject: Ana Lima, severity: critical}
    notes:
      - {rule: idle, subject: Bo}
  - name: nothing fires on an empty company
    at: 2026-03-15
    expect: []
  - name: wrong on purpose
    at: 2026-03-15
    data:
      deals:
        - {name: Acme, owner: Bo, path: [[Prospecting, -60]], count: 2}
    expect:
      - {rule: too-many-open, subject: Ana Lima, severity: warn}
  - name: a rule named by the test runs even when disabled
    at: 2026-03-15
    rules: [broken]
    expect: []
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_passing_and_failing_tests_are_told_apart_with_expected_vs_got(tmp_path: Path) -> None:
    write(tmp_path, "toy.yaml", RULES)
    test_file = write(tmp_path, "tests/toy.yaml", TESTS)
    run = run_rule_tests([tmp_path / "tests"], kinds=TOY_KINDS)
    assert run.problems == []
    assert [(r.name, r.passed) for r in run.results] == [
        ("three open deals is critical", True),
        ("nothing fires on an empty company", True),
        ("wrong on purpose", False),
        ("a rule named by the test runs even when disabled", False),
    ]
    assert format_run(run) == [
        f"FAILED {test_file}:21: test 'wrong on purpose'",
        "  expected, not found:",
        "    too-many-open  Ana Lima  warn",
        "  found, not expected:",
        "    too-many-open  Bo  warn  (Bo has 2 open deals (limit 2).)",
        f"FAILED {test_file}:28: test 'a rule named by the test runs even when disabled'",
        "  error: broken: evaluation failed: ZeroDivisionError: the toy kind always fails (broken at 2026-03-14)",
        "4 rule test(s): 2 passed, 2 failed",
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("    expect: []\n", "    expect: []\n    bogus: 1\n", 1),
            "21:5: unknown key 'tests.1.bogus'; expected one of: name, at, rules, data, expect, notes",
        ),
        (("  - name: nothing fires on an empty company\n    at: 2026-03-15\n", "  - name: x\n", 1), "missing required"),
        (("{name: Won, owner: Bo,", "{name: Won, owner: Cy,", 1), "test 'three open deals is critical': unknown rep"),
        (("    - {name: Bo, team: West}\n", "    - {name: Bo, team: West, owner: x}\n", 1), "6:30: unknown key"),
        (("[Closed Won, -3]", "[Closed Wonn, -3]", 1), "13:75: test 'three open deals is critical': unknown stage"),
        (("[Closed Won, -3]", "[Closed Won, -90]", 1), "the path must go forward in time"),
        (
            ("rules: [broken]", "rules: [brokn]", 1),
            "30:13: test 'a rule named by the test runs even when disabled': no",
        ),
        (("subject: Bo}", "subject: Bo, severity: warn}", 1), "unknown key 'tests.0.notes.0.severity'"),
        (("rule_files: [../toy.yaml]", "rule_files: [../nope.yaml]", 1), "1:13: the rule files named here have prob"),
        (("Europe/Berlin", "Mars/Olympus", 1), "2:21: company.timezone: got 'Mars/Olympus'; expected an IANA"),
        (("at: 2026-03-15\n", "at: soon\n", 1), "test"),
        (
            (
                "tests:\n",
                "  quotas: [{rep: Bo, start: -9, end: 9, amount: 1}, {rep: Bo, start: 0, end: 9, amount: 1}]\ntests:\n",
                1,
            ),
            "overlaps quota #1 of the same rep",
        ),
        (("{name: Won, owner: Bo, amount: 1000,", "{name: Won, owner: Bo, amount: .nan,", 1), "deals.1.amount"),
        (
            ("[Qualification, -30]]", "[Qualification, -1000000.0]]", 1),
            "path.1.1: got -1000000.0; expected days relative to 'at' (a number from -36500 to 36500) or a date",
        ),
    ],
)
def test_a_bad_test_file_is_reported_at_its_line(tmp_path: Path, change: tuple[str, str, int], expected: str) -> None:
    write(tmp_path, "toy.yaml", RULES)
    old, new, count = change
    assert old in TESTS
    test_file = write(tmp_path, "tests/toy.yaml", TESTS.replace(old, new, count))
    run = run_rule_tests([test_file], kinds=TOY_KINDS)
    assert run.problems, format_run(run)
    assert any(p.startswith(f"{test_file}:") and expected in p for p in run.problems), run.problems


def test_the_tests_folder_beside_the_rule_files_is_the_default(tmp_path: Path) -> None:
    write(tmp_path, "rules.d/a.yaml", RULES)
    write(tmp_path, "rules.d/tests/a.yaml", TESTS.replace("../toy.yaml", "../a.yaml"))
    assert default_test_paths([tmp_path / "rules.d"]) == [tmp_path / "rules.d/tests"]
    assert default_test_paths([tmp_path / "rules.d/a.yaml"]) == [tmp_path / "rules.d/tests"]
    assert default_test_paths([tmp_path / "elsewhere"]) == []
    assert run_rule_tests([], kinds=TOY_KINDS).problems == ["(no path): no rule test files found"]


def test_compact_data_becomes_the_rows_a_sync_would_write(warehouse: Engine) -> None:
    at = datetime(2026, 3, 31, 21, 30, tzinfo=UTC)  # 23:30 in Berlin on the last day of the quarter
    company = CompanySettings(timezone="Europe/Berlin", fx_rates={"EUR": Decimal("1.10")})
    data = DataIn.model_validate(
        {
            "reps": [{"name": "Ana Lima", "team": "West", "hired_on": -10}, {"name": "Max", "manager": "Ana Lima"}],
            "quotas": [{"rep": "Ana Lima", "start": date(2026, 1, 1), "end": date(2026, 3, 31), "amount": 1000}],
            "leads": [{"name": "L", "owner": "Max", "created": -2, "qualified": True, "lead_source": "Web"}],
            "deals": [
                {
                    "name": "Reopened",
                    "owner": "Ana Lima",
                    "amount": 100,
                    "currency": "EUR",
                    "path": [["Prospecting", -30], ["Closed Won", -20], ["Negotiation", -10.5]],
                    "close_date_changes": [{"at": -15, "from": 1, "to": 20}, {"at": -5, "to": 40}],
                    "lead": "L",
                },
                {"name": "Won", "owner": "Ana Lima", "amount": 50, "path": [["Prospecting", -9], ["Closed Won", 0]]},
            ],
            "activities": [
                {"rep": "Ana Lima", "at": -3, "deal": "Reopened", "count": 2},
                {"rep": "Ana Lima", "at": -1, "deal": "Reopened", "deleted": -0.5},
            ],
        }
    )
    with warehouse.begin() as conn:
        write_data(conn, data, at, company)
    with warehouse.connect() as conn:
        ana, max_ = conn.execute(select(reps).order_by(reps.c.name)).mappings().all()
        assert (ana["id"], ana["team_id"], ana["hired_on"], ana["email"]) == (
            "salesforce:rep1-ana-lima",
            "salesforce:team-west",
            date(2026, 3, 21),
            "ana-lima@example.com",
        )
        assert max_["manager_id"] == "salesforce:rep1-ana-lima"
        deals = {r["name"]: r for r in conn.execute(select(opportunities)).mappings()}
        reopened, won = deals["Reopened"], deals["Won"]
        assert (reopened["stage"], reopened["is_closed"], reopened["closed_at"]) == ("Negotiation", False, None)
        assert reopened["amount_reporting"] == Decimal("110.00")
        assert reopened["close_date"] == date(2026, 5, 10)  # the last push: at + 40 days, Berlin date
        assert reopened["stage_entered_at"] == datetime(2026, 3, 21, 9, 30, tzinfo=UTC)
        assert reopened["last_activity_at"] == datetime(2026, 3, 28, 21, 30, tzinfo=UTC)  # the deleted one not
        assert reopened["lead_id"] == "salesforce:lead1.1-l"
        assert (won["is_won"], won["closed_at"], won["close_date"]) == (True, at, date(2026, 3, 31))
        path = conn.execute(
            select(stage_changes.c.from_stage, stage_changes.c.to_stage)
            .where(stage_changes.c.opportunity_id == reopened["id"])
            .order_by(stage_changes.c.changed_at)
        ).all()
        assert path == [(None, "Prospecting"), ("Prospecting", "Closed Won"), ("Closed Won", "Negotiation")]
        pushes = conn.execute(select(close_date_changes.c.old_date, close_date_changes.c.new_date)).all()
        assert sorted(pushes) == [(date(2026, 4, 1), date(2026, 4, 20)), (date(2026, 4, 20), date(2026, 5, 10))]
        assert conn.execute(select(activities.c.id)).scalars().all().__len__() == 3
        lead = conn.execute(select(leads)).mappings().one()
        assert (lead["owner_id"], lead["is_qualified"], lead["assigned_at"]) == (
            "salesforce:rep2-max",
            True,
            datetime(2026, 3, 29, 21, 30, tzinfo=UTC),
        )
        assert conn.execute(select(quotas.c.amount_reporting)).scalar_one() == Decimal("1000.00")


# -- fuzzing: a rule-test file with any data runs or gives located problems, never crashes ---------
_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-40_000, 40_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.sampled_from(["Ana Lima", "Bo", "Acme", "Prospecting", "Closed Won", "EUR", "2026-02-30", "salesforce"]),
    st.dates(min_value=date(1, 1, 1)),
)
_VALID = {
    "reps": {"name": "Cy", "team": "East"},
    "deals": {"name": "D", "owner": "Ana Lima", "amount": 10, "path": [["Prospecting", -10]]},
    "leads": {"name": "L", "owner": "Bo", "created": -3},
    "activities": {"rep": "Bo", "at": -1, "deal": "Acme"},
    "quotas": {"rep": "Bo", "start": -30, "end": 30, "amount": 100},
    "stages": {"name": "Prospecting", "pipeline": "other"},
}
_FIELDS = "name owner rep team path amount currency count at created deal lead close_date close_date_changes deleted"
_field = st.sampled_from([*_FIELDS.split(), "hired_on", "manager", "start", "end", "crm", "pipeline"])
_changes = st.dictionaries(_field, _leaf | st.lists(st.lists(_leaf, max_size=3), max_size=3), max_size=2)
_data = st.dictionaries(
    st.sampled_from(sorted(_VALID)),
    st.lists(_changes, max_size=3),
).map(lambda d: {what: [{**_VALID[what], **change} for change in changes] for what, changes in d.items()})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_data, base=st.booleans())
def test_fuzzed_test_data_runs_or_gives_located_problems(tmp_path: Path, data: dict, base: bool) -> None:
    write(tmp_path, "toy.yaml", RULES)
    spec = yaml.safe_load(TESTS)
    spec["tests"] = spec["tests"][:2]
    target = spec["tests"][0]["data"] if base else spec["data"]
    for key, entries in data.items():
        target[key] = [*target.get(key, []), *entries]
    path = tmp_path / "tests" / "fuzz.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    run = run_rule_tests([path], kinds=TOY_KINDS)
    assert run.results or run.problems
    for problem in run.problems:
        assert re.match(rf"^{re.escape(str(path))}:\d+:\d+: \S", problem), problem
