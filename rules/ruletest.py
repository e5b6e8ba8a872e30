"""Rule unit tests (``python service.py rules test``), in the spirit of ``promtool test rules``.

A test file names rule files, gives a small company as compact data (see rules/testdata.py),
an evaluation instant and the findings expected there. Each test runs in its own throw-away
SQLite warehouse (migrated once, copied per test), so an admin can change a threshold and see
at once which situations still fire. The format is documented in the README ("Rule tests").
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine

from models.database import make_engine, open_warehouse
from models.errors import RuleFileError
from models.settings import CompanySettings
from rules.check import evaluate_rules
from rules.findings import Evaluation
from rules.instants import instant_of
from rules.kinds import KINDS
from rules.loader import RuleSet, describe_error, load_rules, rule_files
from rules.model import Kind
from rules.testdata import DataError, DataIn, write_data
from rules.yamlpos import Positioned, YamlError, parse


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExpectedFinding(_In):
    rule: str
    subject: str  # the subject's name (or warehouse id)
    severity: Literal["warn", "critical"] | None = None  # None: any


class ExpectedNote(_In):
    rule: str
    subject: str


class TestCase(_In):
    name: str
    at: datetime | date  # the evaluation instant; a date is its 00:00 in the company time zone
    rules: list[str] | None = None  # default: every rule of the files
    data: DataIn = Field(default_factory=DataIn)
    expect: list[ExpectedFinding]  # [] asserts that nothing fires
    notes: list[ExpectedNote] | None = None  # None: notes are not checked


class TestFile(_In):
    rule_files: list[str] = Field(min_length=1)  # relative to the test file
    company: CompanySettings = Field(default_factory=CompanySettings)
    data: DataIn = Field(default_factory=DataIn)  # shared by every test (each adds its own)
    tests: list[TestCase] = Field(min_length=1)


@dataclass
class CaseResult:
    file: Path
    name: str
    line: int
    missing: list[str] = field(default_factory=list)  # expected, not found
    unexpected: list[str] = field(default_factory=list)  # found, not expected
    errors: list[str] = field(default_factory=list)  # rules whose evaluation failed

    @property
    def passed(self) -> bool:
        return not (self.missing or self.unexpected or self.errors)


@dataclass
class TestRun:
    results: list[CaseResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # bad test files: exit 2

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]


def default_test_paths(rule_paths: Sequence[Path]) -> list[Path]:
    """The ``tests/`` folders beside the configured rule files (rules.d -> rules.d/tests)."""
    found: list[Path] = []
    for path in rule_paths:
        folder = path if path.is_dir() else path.parent
        if (folder / "tests").is_dir() and folder / "tests" not in found:
            found.append(folder / "tests")
    return found


def run_rule_tests(paths: Sequence[Path], *, kinds: Mapping[str, Kind] = KINDS) -> TestRun:
    """Run every test of every file; bad files become ``problems``, failed expectations results."""
    files, missing = rule_files(paths)
    run = TestRun(problems=list(missing))
    if not files and not missing:
        run.problems.append(f"{', '.join(map(str, paths)) or '(no path)'}: no rule test files found")
    with _warehouses() as fresh:
        for path in files:
            try:
                spec, doc, ruleset = _read(path, kinds)
            except RuleFileError as exc:
                run.problems += exc.problems
                continue
            for index, case in enumerate(spec.tests):
                located = _Located(path, doc, index, case.name)
                result = _run_case(spec, case, ruleset, fresh(), kinds, located)
                if result is None:
                    run.problems += located.problems
                else:
                    run.results.append(result)
    return run


class _Located:
    """Problems of one test, at their place in the file."""

    def __init__(self, path: Path, doc: Positioned, index: int, name: str) -> None:
        self.path, self.doc, self.index, self.name = path, doc, index, name
        self.problems: list[str] = []
        self.line = doc.at(("tests", index)).line

    def report(self, where: tuple[str | int, ...], message: str) -> None:
        mark = self.doc.at(where)
        self.problems.append(f"{self.path}:{mark.line}:{mark.column}: test '{self.name}': {message}")


def _read(path: Path, kinds: Mapping[str, Kind]) -> tuple[TestFile, Positioned, RuleSet]:
    def problem(mark_line: int, mark_column: int, message: str) -> str:
        return f"{path}:{mark_line}:{mark_column}: {message}"

    try:
        doc = parse(path.read_text(encoding="utf-8"))
    except YamlError as exc:
        raise RuleFileError([problem(exc.mark.line, exc.mark.column, exc.message)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleFileError([f"{path}: cannot read the rule test file: {exc}"]) from None
    if not isinstance(doc.value, dict):
        raise RuleFileError([problem(1, 1, "expected a mapping with rule_files, tests (and optionally company, data)")])
    try:
        spec = TestFile.model_validate(doc.value)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where, message, at_key = describe_error(err, TestFile)
            mark = doc.at(where, key=at_key)
            problems.append(problem(mark.line, mark.column, message))
        raise RuleFileError(problems) from None
    rule_paths = [path.parent / name for name in spec.rule_files]
    try:
        ruleset = load_rules(rule_paths, kinds=kinds, timezone=spec.company.timezone)
    except RuleFileError as exc:
        mark = doc.at(("rule_files",))
        raise RuleFileError(
            [problem(mark.line, mark.column, "the rule files named here have problems:"), *exc.problems]
        ) from None
    known = {rule.id for rule in ruleset.rules}
    problems = []
    for i, case in enumerate(spec.tests):
        named = [(("rules", j), rule_id) for j, rule_id in enumerate(case.rules or [])]
        named += [(("expect", j, "rule"), e.rule) for j, e in enumerate(case.expect)]
        named += [(("notes", j, "rule"), n.rule) for j, n in enumerate(case.notes or [])]
        for where, rule_id in named:
            if rule_id not in known:
                mark = doc.at(("tests", i, *where))
                problems.append(
                    problem(mark.line, mark.column, f"test '{case.name}': no rule '{rule_id}' in rule_files")
                )
    if problems:
        raise RuleFileError(problems)
    return spec, doc, ruleset


def _run_case(
    spec: TestFile, case: TestCase, ruleset: RuleSet, engine: Engine, kinds: Mapping[str, Kind], located: _Located
) -> CaseResult | None:
    company = spec.company
    at = instant_of(case.at, company.timezone)
    try:
        data = spec.data.extended(case.data)
    except ValidationError as exc:
        located.report(("tests", located.index, "data"), exc.errors()[0]["msg"].removeprefix("Value error, "))
        return None
    try:
        with engine.begin() as conn:
            write_data(conn, data, at, company)
    except DataError as exc:
        engine.dispose()
        located.report(_data_path(spec, located.index, exc.path), str(exc))
        return None
    selected = [r for r in ruleset.rules if case.rules is None or r.id in case.rules]
    if case.rules is not None:  # a rule named by the test runs even when the file disables it
        selected = [r.model_copy(update={"enabled": True}) for r in selected]
    try:
        evaluations = evaluate_rules(selected, engine, company, at, kinds=kinds)
    finally:
        engine.dispose()
    result = CaseResult(located.path, case.name, located.line)
    result.errors = [f"{e.rule_id}: evaluation failed: {e.error}" for e in evaluations if e.error]
    got = _found(evaluations)
    expected = [(e.rule, e.subject, e.severity) for e in case.expect]
    result.missing, result.unexpected = _compare(expected, got)
    if case.notes is not None:
        noted = [(n.rule_id, n.subject.name, n.subject.id, "note", n.reason) for e in evaluations for n in e.notes]
        missing, unexpected = _compare([(n.rule, n.subject, "note") for n in case.notes], noted)
        result.missing += missing
        result.unexpected += unexpected
    return result


Found = tuple[str, str, str, str, str]  # rule, subject name, subject id, severity (or "note"), explanation


def _found(evaluations: list[Evaluation]) -> list[Found]:
    return [
        (f.rule_id, f.subject.name, f.subject.id, f.severity, f.explanation) for e in evaluations for f in e.findings
    ]


def _compare(expected: list[tuple[str, str, str | None]], got: list[Found]) -> tuple[list[str], list[str]]:
    """Match expectations to findings one to one; what is left over on either side."""
    left = list(got)
    missing: list[str] = []
    for rule, subject, severity in expected:
        match = next(
            (g for g in left if g[0] == rule and subject in (g[1], g[2]) and severity in (None, g[3])),
            None,
        )
        if match is None:
            missing.append(f"{rule}  {subject}  {severity or 'any severity'}")
        else:
            left.remove(match)
    unexpected = [f"{rule}  {name}  {severity}  ({explanation})" for rule, name, _id, severity, explanation in left]
    return missing, unexpected


def _data_path(spec: TestFile, index: int, path: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """A path into the combined data -> the place in the file (shared data first, then the test's)."""
    what, position, *rest = path
    shared = len(getattr(spec.data, str(what)))
    if isinstance(position, int) and position < shared:
        return ("data", what, position, *rest)
    return ("tests", index, "data", what, int(position) - shared, *rest)


@functools.cache
def _template() -> Path:
    """A migrated empty warehouse, made once per process (a migration costs about a second)."""
    folder = Path(tempfile.mkdtemp(prefix="salespulse-ruletest-template-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    template = folder / "template.db"
    open_warehouse(f"sqlite:///{template}").dispose()
    return template


@contextmanager
def _warehouses() -> Iterator[Callable[[], Engine]]:
    """Fresh migrated SQLite warehouses, copies of the template, removed after the run."""
    template = _template()
    with tempfile.TemporaryDirectory(prefix="salespulse-ruletest-") as folder:
        count = 0

        def fresh() -> Engine:
            nonlocal count
            count += 1
            copy = Path(folder) / f"test-{count}.db"
            shutil.copyfile(template, copy)
            return make_engine(f"sqlite:///{copy}")

        yield fresh


def format_run(run: TestRun) -> list[str]:
    """What ``rules test`` prints: each failure with expected vs got, then a one-line summary."""
    lines: list[str] = []
    for result in run.results:
        if result.passed:
            continue
        lines.append(f"FAILED {result.file}:{result.line}: test '{result.name}'")
        lines += [f"  error: {e}" for e in result.errors]
        if result.missing:
            lines.append("  expected, not found:")
            lines += [f"    {m}" for m in result.missing]
        if result.unexpected:
            lines.append("  found, not expected:")
            lines += [f"    {u}" for u in result.unexpected]
    passed = sum(r.passed for r in run.results)
    lines.append(f"{len(run.results)} rule test(s): {passed} passed, {len(run.failed)} failed")
    return lines
