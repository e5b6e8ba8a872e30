"""Silences, mute windows and the silence / alerts commands."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine

import service
from alerts.pipeline import process
from alerts.silences import add_silence, expire_silence, in_mute_window, list_silences, parse_duration, silenced_by
from models.errors import ConfigError, FatalError
from models.settings import MuteWindow, Settings
from rules.findings import Subject
from tests.alerts.helpers import evaluation, finding, rep, rule

T = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)  # Monday
ANA = Subject("rep", "salesforce:005A", "Ana Ruiz", "EMEA")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", timedelta(minutes=90)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("1w", timedelta(weeks=1)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "7x", "d", "0h", "7d garbage", "-1d"])
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(ConfigError, match=r"expected a number and a unit|longer than zero"):
        parse_duration(text)


def test_silence_matching_by_rule_subject_id_or_name_until_it_ends(warehouse: Engine) -> None:
    whole = add_silence(
        warehouse, rule_id="pace", subject=None, duration=timedelta(hours=1), comment="x", by="a", now=T
    )
    one = add_silence(
        warehouse, rule_id="other", subject="ana ruiz", duration=timedelta(days=1), comment="y", by="b", now=T
    )
    found = list_silences(warehouse, T)
    assert [s.id for s in found] == [whole.id, one.id]
    assert silenced_by(found, "pace", ANA, T) is not None
    assert "silenced by #2 (b: y)" in silenced_by(found, "other", ANA, T)
    assert silenced_by(found, "other", Subject("rep", "x", "Ben", "EMEA"), T) is None
    assert silenced_by(found, "pace", ANA, T + timedelta(hours=1)) is None  # ended
    expire_silence(warehouse, one.id, T + timedelta(minutes=5))
    assert silenced_by(list_silences(warehouse, T + timedelta(minutes=6)), "other", ANA, T) is None
    with pytest.raises(FatalError, match="already ended"):
        expire_silence(warehouse, one.id, T + timedelta(minutes=7))
    with pytest.raises(FatalError, match="no silence 99"):
        expire_silence(warehouse, 99, T)


WEEKEND = MuteWindow(name="weekend", weekdays=["Saturday", "sun"])
XMAS = MuteWindow(name="holidays", dates=["12-24..12-26", "12-31..01-01"])
FREEZE = MuteWindow(name="q-end freeze", dates=["2026-06-25..2026-06-30"], rules=["pace"])


@pytest.mark.parametrize(
    ("window", "rule_id", "when", "tz", "muted"),
    [
        (WEEKEND, "pace", datetime(2026, 5, 9, 12, tzinfo=UTC), "UTC", True),  # Saturday
        (WEEKEND, "pace", datetime(2026, 5, 8, 23, tzinfo=UTC), "UTC", False),  # Friday night in UTC...
        (WEEKEND, "pace", datetime(2026, 5, 8, 23, tzinfo=UTC), "Europe/Berlin", True),  # ...Saturday in Berlin
        (WEEKEND, "pace", datetime(2026, 5, 11, 3, tzinfo=UTC), "America/Los_Angeles", True),  # still Sunday there
        (XMAS, "pace", datetime(2026, 12, 25, 9, tzinfo=UTC), "UTC", True),
        (XMAS, "pace", datetime(2027, 1, 1, 9, tzinfo=UTC), "UTC", True),  # a yearly range over new year
        (XMAS, "pace", datetime(2026, 12, 27, 9, tzinfo=UTC), "UTC", False),
        (FREEZE, "pace", datetime(2026, 6, 30, 9, tzinfo=UTC), "UTC", True),
        (FREEZE, "other", datetime(2026, 6, 30, 9, tzinfo=UTC), "UTC", False),  # only its rules
        (FREEZE, "pace", datetime(2027, 6, 30, 9, tzinfo=UTC), "UTC", False),  # a dated range is once
    ],
)
def test_mute_windows_in_the_company_time_zone(window, rule_id, when, tz, muted) -> None:
    assert (in_mute_window([window], rule_id, when, tz) is not None) == muted


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("weekdays", ["funday"], "weekday 'fun'"),
        ("dates", ["2026-13"], "expected YYYY-MM-DD or MM-DD"),
        ("dates", ["01-01..02-02..03-03"], "a range A..B"),
    ],
)
def test_bad_mute_windows_are_refused(field: str, value: list, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MuteWindow(name="x", **{field: value})


def run(monkeypatch: pytest.MonkeyPatch, capsys, engine: Engine, rules_dir: Path, *args: str):
    for name in [n for n in os.environ if n.upper().startswith("SALESPULSE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SALESPULSE_DATABASE__URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("SALESPULSE_RULES__PATHS", str(rules_dir))
    code = service.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_silence_and_alerts_commands(warehouse: Engine, tmp_path: Path, monkeypatch, capsys) -> None:
    rules_dir = tmp_path / "rules.d"
    rules_dir.mkdir()
    (rules_dir / "r.yaml").write_text("rules:\n  - id: pace\n    kind: quota_attainment\n", encoding="utf-8")
    process([evaluation("pace", [finding(rep("Ana Ruiz"))], T)], {"pace": rule()}, warehouse, Settings(), T)

    code, out, err = run(
        monkeypatch,
        capsys,
        warehouse,
        rules_dir,
        "silence",
        "add",
        "--rule",
        "pace",
        "--subject",
        "Ana Ruiz",
        "--for",
        "7d",
        "--comment",
        "on leave",
        "--by",
        "kim",
    )
    assert (code, err) == (0, "")
    assert out.startswith("silence #1 added: rule pace, subject Ana Ruiz, until ")
    assert "by kim: on leave" in out
    code, out, err = run(
        monkeypatch, capsys, warehouse, rules_dir, "silence", "add", "--rule", "pase", "--for", "1d", "--comment", "x"
    )
    assert code == 2
    assert "no rule 'pase'; did you mean 'pace'?" in err
    code, out, _ = run(monkeypatch, capsys, warehouse, rules_dir, "alerts", "list", "--state", "firing")
    assert code == 0
    assert "firing" in out
    assert "Ana Ruiz" in out
    assert "silenced by #1 (kim: on leave)" in out
    code, out, _ = run(monkeypatch, capsys, warehouse, rules_dir, "alerts", "list", "--state", "resolved")
    assert out.strip() == "(no alerts)"
    code, out, _ = run(monkeypatch, capsys, warehouse, rules_dir, "silence", "expire", "1")
    assert (code, out) == (0, "silence #1 expired; its alerts notify again from the next check\n")
    code, out, _ = run(monkeypatch, capsys, warehouse, rules_dir, "silence", "list")
    assert out == "(no active silences)\n"
    code, out, _ = run(monkeypatch, capsys, warehouse, rules_dir, "silence", "list", "--all")
    assert out.startswith("#1 expired: rule pace")
    code, out, err = run(
        monkeypatch, capsys, warehouse, rules_dir, "silence", "add", "--rule", "pace", "--for", "soon", "--comment", "x"
    )
    assert code == 2
    assert "--for: duration 'soon': expected a number and a unit m, h, d or w" in err
