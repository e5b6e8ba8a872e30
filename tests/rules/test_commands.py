"""check, rules validate / test / backtest as a user runs them: output and exit codes.

The commands run in-process with the toy kinds registered next to the real ones (the kinds
registry is a plain mapping, the route table of kinds), against a real warehouse.
"""

from __future__ import annotations

import os
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

import service
from models.settings import CompanySettings
from rules.kinds import KINDS
from rules.testdata import DataIn, write_data
from tests.rules.toy_kinds import TOY_KINDS

AT = datetime(2026, 3, 16, 9, tzinfo=UTC)
RULES = """\
rules:
  - id: too-many-open
    kind: open_deals
    severity: {warn: 2, critical: 3}
    summary: "{subject} juggles {value:.0f} deals"
  - id: idle
    kind: open_deals
    params: {note_reps_without_deals: true}
"""


@pytest.fixture
def env(tmp_path: Path, warehouse: Engine, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A warehouse with two reps (Ana: 3 open deals, Bo: none) and a rule file; returns the rule file."""
    for name, kind in TOY_KINDS.items():
        monkeypatch.setitem(KINDS, name, kind)
    with warehouse.begin() as conn:
        data = {
            "reps": [{"name": "Ana Lima", "team": "West"}, {"name": "Bo", "team": "West"}],
            "deals": [{"name": "A", "owner": "Ana Lima", "amount": 10, "path": [["Prospecting", -30]], "count": 3}],
        }
        write_data(conn, DataIn.model_validate(data), AT, CompanySettings())
    rules = tmp_path / "rules.d" / "toy.yaml"
    rules.parent.mkdir()
    rules.write_text(RULES, encoding="utf-8")
    for name in [n for n in os.environ if n.upper().startswith("SALESPULSE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SALESPULSE_DATABASE__URL", warehouse.url.render_as_string(hide_password=False))
    monkeypatch.setenv("SALESPULSE_RULES__PATHS", str(rules.parent))
    return rules


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = service.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.usefixtures("env")
def test_check_dry_run_prints_findings_and_notes_and_changes_nothing(capsys) -> None:
    code, out, err = run(capsys, "check", "--dry-run", "--as-of", "2026-03-16T09:00:00Z")
    assert (code, err) == (0, "")
    assert "as of 2026-03-16 09:00 UTC: 2 rule(s) evaluated, 1 finding(s)" in out
    row = next(line for line in out.splitlines() if "too-many-open" in line)
    assert all(part in row for part in ("critical", "Ana Lima (rep)", "West", "Ana Lima juggles 3 deals"))
    assert "not evaluated (1):\n  idle: rep Bo (West): no open deals" in out


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["check", "--dry-run", "--as-of", "2026-02-15"], 0, "as of 2026-02-15 00:00 UTC: 2 rule(s) evaluated, 1 find"),
        (["check", "--dry-run", "--as-of", "2026-01-01"], 0, "2 rule(s) evaluated, 0 finding(s)"),  # before the deals
        (["check", "--dry-run", "--rule", "idle"], 0, "1 rule(s) evaluated, 0 finding(s)"),
        (["check", "--dry-run", "--rule", "too-many"], 2, "no rule 'too-many'; did you mean 'too-many-open'?"),
        (["check", "--dry-run", "--as-of", "2026-02-30"], 2, "--as-of: '2026-02-30' is not a date; expected a date"),
        (["check", "--dry-run", "--as-of", "2026-03-01T09:00"], 2, "has no time zone offset"),
        (["check", "--dry-run", "--as-of", "2026-03-16T09:00:00Z"], 0, "alerts: 1 firing; notifications firing 1"),
    ],
)
@pytest.mark.usefixtures("env")
def test_check_options(capsys, args: list[str], code: int, expected: str) -> None:
    got, out, err = run(capsys, *args)
    assert got == code
    assert expected in out + err


def test_check_with_a_failing_rule_shows_the_others_and_exits_1(env: Path, capsys) -> None:
    env.write_text(RULES + "  - {id: boom, kind: failing}\n", encoding="utf-8")
    code, out, err = run(capsys, "check", "--dry-run", "--as-of", "2026-03-16")
    assert code == 1
    assert "Ana Lima (rep)" in out
    assert "rule boom failed: ZeroDivisionError: the toy kind always fails" in out
    assert "error: 1 rule(s) could not be evaluated: boom" in err


def test_rules_validate_checks_names_against_the_warehouse(env: Path, capsys) -> None:
    assert run(capsys, "rules", "validate") == (
        0,
        "2 rule(s) in 1 file(s): valid, names checked against the warehouse\n",
        "",
    )
    env.write_text(RULES + "    scope: {teams: [Wset]}\n    for: zero\n", encoding="utf-8")
    code, out, err = run(capsys, "rules", "validate", str(env))
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"{env}:9:21: rule 'idle': scope.teams: unknown team 'Wset'; did you mean 'West'?",
        f"{env}:10:10: rule 'idle': for: got 'zero'; expected a valid integer, unable to parse string as an integer",
        "2 problem(s) in rule files; nothing was done",
    ]


def test_rules_test_exit_codes(env: Path, capsys, tmp_path: Path) -> None:
    tests = env.parent / "tests" / "toy.yaml"
    tests.parent.mkdir()
    case = """\
    rule_files: [../toy.yaml]
    tests:
      - name: Ana juggles
        at: 2026-03-16
        data:
          reps: [{name: Ana}]
          deals: [{name: A, owner: Ana, path: [[Prospecting, -3]], count: 3}]
        expect: [{rule: too-many-open, subject: Ana, severity: SEVERITY}]
    """
    tests.write_text(textwrap.dedent(case).replace("SEVERITY", "critical"), encoding="utf-8")
    assert run(capsys, "rules", "test") == (0, "1 rule test(s): 1 passed, 0 failed\n", "")
    tests.write_text(textwrap.dedent(case).replace("SEVERITY", "warn"), encoding="utf-8")
    code, out, _ = run(capsys, "rules", "test")
    assert code == 1
    assert (
        "expected, not found:\n    too-many-open  Ana  warn\n  found, not expected:\n    too-many-open  Ana  crit"
        in out
    )
    tests.write_text(textwrap.dedent(case).replace("SEVERITY", "fatal"), encoding="utf-8")
    code, _, err = run(capsys, "rules", "test", str(tests))
    assert code == 2
    assert f"{tests}:8:" in err
    assert run(capsys, "rules", "test", str(tmp_path / "none.yaml"))[0] == 2


@pytest.mark.usefixtures("env")
def test_backtest_prints_per_rule_counts_and_subjects(capsys) -> None:
    code, out, err = run(capsys, "rules", "backtest", "--from", "2026-02-01", "--to", "2026-03-01", "--every", "2w")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert any(line.startswith("│ 2026-02-01 00:00 │        0 │        0 │") for line in lines), out
    assert any("2026-02-15 00:00 │        1 │        1 │ Ana Lima" in line for line in lines), out
    assert "too-many-open: fired at 2 of 3 instant(s), 2 finding(s), 1 distinct subject(s)" in out
    assert "idle: fired at 0 of 3 instant(s)" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--from", "2026-03-01", "--to", "2026-02-01"], "--to is before --from"),
        (["--from", "2026-01-01", "--to", "2026-03-01", "--every", "1m"], "at most 1,000"),
        (["--from", "2026-01-01", "--to", "2026-03-01", "--every", "weekly"], "--every 'weekly': expected a dur"),
        (["--from", "yesterday", "--to", "2026-03-01"], "'yesterday' is not a date or datetime"),
    ],
)
@pytest.mark.usefixtures("env")
def test_backtest_bad_arguments_exit_2(capsys, args: list[str], expected: str) -> None:
    code, _, err = run(capsys, "rules", "backtest", *args)
    assert code == 2
    assert expected in err


def test_rules_validate_without_a_reachable_warehouse_checks_all_but_names(
    capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.upper().startswith("SALESPULSE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SALESPULSE_DATABASE__URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    code, out, err = run(capsys, "rules", "validate")
    assert code == 0
    assert "warning: team, stage and rep names not checked: cannot open the warehouse" in err
    assert out.endswith("file(s): valid\n")
