"""Rule files: what loads, and every problem reported at once at its line and column."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.errors import ConfigError, RuleFileError
from rules.kinds import KINDS
from rules.loader import load_rules, rule_files
from rules.model import Rule
from rules.names import WarehouseNames
from rules.schedule import cron_trigger
from tests.rules.toy_kinds import TOY_KINDS

GOOD = """\
# a comment
rules:
  - id: too-many-open
    kind: open_deals
    description: Reps juggling too many open deals
    schedule: "30 8 * * 1-5"
    scope: {teams: [West], exclude_reps: [bob@example.com]}
    params: {min_amount: 1000, stages: [Legal Review]}
    severity: {warn: 5, critical: 8}
    for: 2
    labels: {region: emea}
    channel: "#sales-west"
    summary: "{subject} has {value:.0f} open deals"
    repeat_interval: 4h
    keep_firing_for: 1d
    send_resolved: true
  - id: minimal
    kind: failing
"""

PROBLEM = re.compile(r"^.+:\d+:\d+: (rule '[^']*'|rule #\d+: |)")


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(paths: list[Path], **kwargs) -> list[str]:
    with pytest.raises(RuleFileError) as caught:
        load_rules(paths, kinds=TOY_KINDS, **kwargs)
    assert isinstance(caught.value, ConfigError)
    return caught.value.problems


def test_a_valid_file_loads_every_key(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", GOOD)
    ruleset = load_rules([path], kinds=TOY_KINDS)
    first, second = ruleset.rules
    assert ruleset.files == (path,)
    assert first.id == "too-many-open"
    assert first.for_ == 2
    assert first.scope.teams == ("West",)
    assert first.params == {"min_amount": 1000, "stages": ["Legal Review"]}
    assert first.severity.critical == 8
    assert first.repeat_interval == timedelta(hours=4)
    assert first.keep_firing_for == timedelta(days=1)
    assert first.labels == {"region": "emea"}
    assert (second.id, second.schedule, second.for_, second.enabled) == ("minimal", "0 9 * * 1-5", 1, True)
    assert ruleset.where == {"too-many-open": f"{path}:3", "minimal": f"{path}:17"}


def test_folders_read_their_yaml_files_one_level_deep_and_globs_expand(tmp_path: Path) -> None:
    a = write(tmp_path, "rules.d/a.yaml", "rules:\n  - {id: a, kind: failing}\n")
    b = write(tmp_path, "rules.d/b.yml", "rules:\n  - {id: b, kind: failing}\n")
    write(tmp_path, "rules.d/README.md", "not a rule file")
    write(tmp_path, "rules.d/tests/a.yaml", "rule_files: [../a.yaml]\n")
    c = write(tmp_path, "more/c.yaml", "rules:\n  - {id: c, kind: failing}\n")
    ruleset = load_rules([tmp_path / "rules.d", Path(f"{tmp_path}/more/*.yaml"), a], kinds=TOY_KINDS)
    assert [r.id for r in ruleset.rules] == ["a", "b", "c"]
    assert ruleset.files == (a, b, c)  # a named twice is read once


def test_missing_paths_and_empty_globs_are_problems(tmp_path: Path) -> None:
    files, missing = rule_files([tmp_path / "nope.yaml", Path(f"{tmp_path}/*.yaml")])
    assert files == []
    assert missing == [
        f"{tmp_path}/nope.yaml: no such file or folder; expected a rule file, folder or glob",
        f"{tmp_path}/*.yaml: no file matches this pattern; expected a rule file, folder or glob",
    ]


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "  - {id: x, kind: failing, frobnicate: 1}\n",
            "2:28: rule 'x': unknown key 'frobnicate'; expected one of: id,",
        ),
        (
            "  - {id: x, kind: failing, sevrity: {warn: 1}}\n",
            "rule 'x': unknown key 'sevrity'; did you mean 'severity'?",
        ),
        (
            "  - {id: x, kind: open_deals, severity: {warn: high}}\n",
            "2:48: rule 'x': severity.warn: got 'high'; expected",
        ),
        ("  - {id: x, kind: failing, severity: {warning: 1}}\n", "rule 'x': unknown key 'severity.warning'; did you"),
        ("  - {id: x, kind: failing, for: 0}\n", "2:33: rule 'x': for: got 0; expected greater than or equal to 1"),
        ("  - {id: x, kind: failing, enabled: maybe}\n", "rule 'x': enabled: got 'maybe'; expected a valid boolean"),
        ("  - {id: x, kind: failing, repeat_interval: soon}\n", "repeat_interval: got 'soon'; expected a duration"),
        ("  - {id: x, kind: failing, labels: {team: [a]}}\n", "rule 'x': labels.team: expected a valid string"),
        ("  - {id: x, kind: failing, scope: {team: [West]}}\n", "unknown key 'scope.team'; did you mean 'teams'?"),
        ("  - {id: x, kind: failing, scope: {sources: [pipedrive]}}\n", "unknown source 'pipedrive'; expected sal"),
        ("  - {id: x}\n", "2:5: rule 'x': missing required key 'kind'"),
        ("  - {kind: failing}\n", "2:5: rule #1: missing required key 'id'"),
        ("  - {id: 'two words', kind: failing}\n", "rule 'two words': id must be 1-100 letters, digits"),
        ("  - {id: x, kind: open_deal}\n", "2:19: rule 'x': unknown kind 'open_deal'; did you mean 'open_deals'?"),
        ("  - {id: x, kind: failing, schedule: '0 9 * *'}\n", "rule 'x': schedule '0 9 * *' is not a valid cron"),
        ("  - {id: x, kind: failing, schedule: '61 9 * * *'}\n", "higher than the maximum value (59)"),
        ("  - {id: x, kind: failing, schedule: '0 9 * * 8'}\n", "expected numbers 0-7 (0 and 7 are Sunday)"),
        ("  - {id: x, kind: open_deals, params: {min_amout: 1}}\n", "unknown params key 'min_amout' for kind open_dea"),
        ("  - {id: x, kind: open_deals, params: {min_amount: lots}}\n", "params.min_amount: got 'lots'; expected a"),
        ("  - {id: x, kind: open_deals, params: [1]}\n", "2:39: rule 'x': params: expected a valid dictionary"),
        ("  - {id: x, kind: failing, summary: '{subject.name}'}\n", "placeholder {subject.name} is not one of"),
        ("  - {id: x, kind: failing, summary: '{value[0]}'}\n", "placeholder {value[0]} is not one of"),
        ("  - {id: x, kind: failing, summary: '{subject:.0%}'}\n", "placeholder {subject:.0%}: "),
        ("  - {id: x, kind: failing, summary: 'open {'}\n", "summary is not a valid template"),
        ("  - {id: x, kind: failing, summary: '{value!x}'}\n", "conversion !x; expected !s or !r"),
        ("  - just text\n", "2:5: rule #1: expected a mapping with id, kind, params"),
        ("  - {id: x, kind: failing, id: y}\n", "2:28: key 'id' is given twice (first at line 2)"),
        ("  - {id: x, kind: failing, <<: {a: 1}}\n", "merge keys (<<) are not supported"),
        (
            "  - !!python/object/apply:os.system ['echo pwned']\n",
            "2:5: unsupported tag tag:yaml.org,2002:python/object/apply",
        ),
        ("  - {id: x, kind: failing\n", "not valid YAML"),
        ("  - {id: x, kind: failing, channel: '#a'}\nextra: 1\n", "3:1: unknown top-level key 'extra'"),
    ],
)
def test_each_problem_is_located_and_explained(tmp_path: Path, snippet: str, expected: str) -> None:
    path = write(tmp_path, "r.yaml", "rules:\n" + snippet)
    problems = problems_of([path])
    assert any(expected in p for p in problems), problems
    assert all(p.startswith(f"{path}:") and PROBLEM.match(p) for p in problems), problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "1:1: expected a mapping with a 'rules:' list"),
        ("- a\n", "1:1: expected a mapping with a 'rules:' list"),
        ("rules:\n", "1:7: expected a 'rules:' list of rule declarations"),
        ("rules: {id: x}\n", "1:8: 'rules' must be a list"),
        ("a: &a [*a]\n", "an alias refers to the value that contains it"),
        ("rules: []\n---\nrules: []\n", "2:1: not valid YAML: but found another document"),
        ("rules:\n\t- x\n", "not valid YAML"),
    ],
)
def test_file_level_problems_are_located(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, "r.yaml", text)
    assert any(f"{path}:" in p and expected in p for p in problems_of([path])), problems_of([path])


def test_a_file_of_nested_aliases_is_refused_not_expanded(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    path = write(tmp_path, "r.yaml", "\n".join(lines) + "\n")
    assert any("expands to more than 100,000 values" in p for p in problems_of([path]))


def test_not_utf8_is_a_located_problem(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(b"rules:\n  - id: caf\xe9\n")
    assert problems_of([path]) == [f"{path}:2:12: not UTF-8 text; save the file as UTF-8"]


def test_every_problem_of_every_file_at_once_in_file_order(tmp_path: Path) -> None:
    a = write(
        tmp_path,
        "a.yaml",
        """\
        rules:
          - id: dup
            kind: open_deals
            severity: {warn: x}
            params: {min_amount: y}
          - id: ok
            kind: failing
        """,
    )
    b = write(
        tmp_path,
        "b.yaml",
        """\
        rules:
          - id: dup
            kind: nope
          - id: ok
            kind: failing
            for: -1
        """,
    )
    problems = problems_of([a, b])
    assert [p.split(": ", 1)[0] for p in problems] == [
        f"{a}:4:22",
        f"{a}:5:26",
        f"{b}:2:9",
        f"{b}:3:11",
        f"{b}:4:9",
        f"{b}:6:10",
    ]
    assert f"{b}:2:9: rule 'dup': id 'dup' is already used at {a}:2; ids must be unique" in problems[2]


NAMES = WarehouseNames(
    teams=frozenset({"Enterprise West", "SMB"}),
    stages=frozenset({"Legal Review", "Prospecting", "closedwon", "Closed Won"}),
    pipelines=frozenset({"default", "1190011"}),
    reps=frozenset({"Ana Lima", "ana@example.com"}),
)


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("scope: {teams: [West]}", "4:21: rule 'x': scope.teams: unknown team 'West'; did you mean 'Enterprise West'?"),
        ("scope: {exclude_teams: [smb]}", "scope.exclude_teams: unknown team 'smb'; did you mean 'SMB'?"),
        ("scope: {reps: [Ana Lim]}", "scope.reps: unknown rep 'Ana Lim'; did you mean 'Ana Lima'?"),
        ("scope: {pipelines: [renewals]}", "unknown pipeline 'renewals'; expected one of: 1190011, default"),
        ("params: {stages: [Legal Reveiw]}", "params.stages.0: unknown stage 'Legal Reveiw'; did you mean 'Legal Rev"),
    ],
)
def test_unknown_warehouse_names_are_problems_with_a_suggestion(tmp_path: Path, snippet: str, expected: str) -> None:
    path = write(tmp_path, "r.yaml", f"rules:\n  - id: x\n    kind: open_deals\n    {snippet}\n")
    assert load_rules([path], kinds=TOY_KINDS).rules  # without the warehouse's names: no check
    assert load_rules([path], kinds=TOY_KINDS, names=WarehouseNames()).rules  # an empty warehouse: no check
    problems = problems_of([path], names=NAMES)
    assert len(problems) == 1
    assert expected in problems[0]


def test_known_names_pass(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "r.yaml",
        "rules:\n  - id: x\n    kind: open_deals\n"
        "    scope: {teams: [SMB], reps: [ana@example.com], pipelines: [default]}\n"
        "    params: {stages: [closedwon, Legal Review]}\n",
    )
    assert load_rules([path], kinds=TOY_KINDS, names=NAMES).rules[0].scope.teams == ("SMB",)


@pytest.mark.parametrize(
    ("expression", "weekdays"),
    [
        ("0 9 * * 1-5", ["Mon", "Tue", "Wed", "Thu", "Fri"]),  # APScheduler's own reading: Tue-Sat
        ("0 9 * * 0", ["Sun"]),
        ("0 9 * * 7", ["Sun"]),
        ("0 9 * * 5-7", ["Fri", "Sat", "Sun"]),
        ("0 9 * * */2", ["Tue", "Thu", "Sat", "Sun"]),
        ("0 9 * * 1,3", ["Mon", "Wed"]),
        ("0 9 * * mon-fri", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
        ("0 9 * * *", ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]),
    ],
)
def test_cron_weekday_numbers_mean_what_they_mean_in_crontab(expression: str, weekdays: list[str]) -> None:
    trigger = cron_trigger(expression, "Europe/Berlin")
    moment = datetime(2026, 11, 29, 12, tzinfo=UTC)  # a Sunday
    seen: list[str] = []
    for _ in range(7):
        moment = trigger.get_next_fire_time(None, moment + timedelta(minutes=1))
        seen.append(moment.strftime("%a"))
        assert (moment.hour, moment.minute, moment.utcoffset()) == (9, 0, timedelta(hours=1))
    assert sorted(set(seen), key=["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].index) == weekdays


# -- fuzzing: no rule file crashes the loader -------------------------------------------------
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["0 9 * * 1-5", "* * *", "open_deals", "failing", "{subject}", "{x.y}", "4h", "West", "#c"]),
)
_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
)
_rule_keys = st.sampled_from([*Rule.model_fields, "for", "bogus"])
_scope = st.dictionaries(st.sampled_from(["teams", "reps", "sources", "pipelines", "team"]), _values, max_size=3)
_params = st.dictionaries(st.sampled_from(["min_amount", "stages", "note_reps_without_deals", "x"]), _values)
_rule = st.dictionaries(_rule_keys, _values, max_size=8).flatmap(
    lambda d: st.fixed_dictionaries(
        {"id": st.sampled_from(["a", "b", "a b", ""]) | _scalars, "kind": st.sampled_from([*TOY_KINDS]) | _scalars},
        optional={"scope": _scope, "params": _params, "severity": st.dictionaries(st.text(max_size=9), _values)},
    ).map(lambda base: {**d, **base})
)
_document = st.one_of(st.fixed_dictionaries({"rules": st.lists(_rule, max_size=4)}), _values)


def _check_outcome(path: Path) -> None:
    problems: list[str] = []
    try:
        ruleset = load_rules([path], kinds=TOY_KINDS, names=NAMES)
    except RuleFileError as exc:
        problems = exc.problems
    else:
        assert all(rule.kind in TOY_KINDS for rule in ruleset.rules)
        return
    assert problems
    for problem in problems:
        assert re.match(rf"^{re.escape(str(path))}:\d+:\d+: \S", problem), problem


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=_document)
def test_fuzzed_rule_documents_load_or_give_located_problems(tmp_path: Path, document: object) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    _check_outcome(path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from([*"rules:- id{}[]&*!|>'\"#\n\t ,ab0x%@`\\?", "\x00", "é"])))
def test_fuzzed_text_loads_or_gives_located_problems(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    _check_outcome(path)


def _real_kind_rule() -> st.SearchStrategy[dict]:
    def params_for(kind: str) -> st.SearchStrategy[dict]:
        fields = [f.alias or name for name, f in KINDS[kind].Params.model_fields.items()]
        return st.dictionaries(st.sampled_from([*fields, "bogus"]), _values, max_size=4)

    return st.sampled_from(sorted(KINDS)).flatmap(
        lambda kind: st.fixed_dictionaries(
            {"id": st.just("r"), "kind": st.just(kind), "params": params_for(kind)},
            optional={"severity": st.fixed_dictionaries({}, optional={"warn": _scalars, "critical": _scalars})},
        )
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rule=_real_kind_rule())
def test_fuzzed_params_of_the_real_kinds_load_or_give_located_problems(tmp_path: Path, rule: dict) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump({"rules": [rule]}, allow_unicode=True), encoding="utf-8")
    problems: list[str] = []
    try:
        load_rules([path], kinds=KINDS, names=NAMES)
    except RuleFileError as exc:
        problems = exc.problems
    for problem in problems:
        assert re.match(rf"^{re.escape(str(path))}:\d+:\d+: rule 'r': \S", problem), problem
