"""Rule files: find them, read them with positions, validate every rule, report every problem at once.

Admins edit these files by hand and deploy them to a daemon that runs for months, so a file
is either entirely valid or refused with *all* its problems, each as
``file:line:column: rule 'id': what is wrong, what was expected``. Checked here: YAML syntax,
unknown keys and wrong types (pydantic, for the rule and for its kind's ``params``), unknown
kinds, cron schedules, duplicate ids across files, summary templates, and the team / stage /
pipeline / rep names a rule mentions (against the warehouse, when it has data).

A rule file can only declare values: YAML is read with the safe constructor and the
evaluators are ours, so no rule can run SQL or reach outside the warehouse.
"""

from __future__ import annotations

import difflib
import glob
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from models.errors import RuleFileError
from rules.instants import parse_duration
from rules.kinds import KINDS
from rules.model import Kind, Rule
from rules.names import NameKind, NameOf, WarehouseNames, warehouse_names
from rules.schedule import cron_trigger
from rules.summary import template_problems
from rules.yamlpos import Mark, Positioned, YamlError, parse

__all__ = ["RuleFileError", "RuleSet", "WarehouseNames", "load_rules", "rule_files", "warehouse_names"]

RULE_FILE_SUFFIXES = (".yaml", ".yml")
RULE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
DURATION_KEYS = ("repeat_interval", "keep_firing_for")
SCOPE_NAMES: dict[str, NameKind] = {
    "teams": "team",
    "exclude_teams": "team",
    "pipelines": "pipeline",
    "exclude_pipelines": "pipeline",
    "reps": "rep",
    "exclude_reps": "rep",
}
SOURCES = ("salesforce", "hubspot")


@dataclass(frozen=True)
class RuleSet:
    """The rules of a set of files, in file order, and the files they came from."""

    rules: tuple[Rule, ...]
    files: tuple[Path, ...]
    where: Mapping[str, str] = field(default_factory=dict)  # rule id -> "file:line", for messages

    def get(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)


def rule_files(paths: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """Files named by ``paths`` (files, folders: their *.yaml / *.yml, globs), and what could not be found.

    Folders are read one level deep, so a ``tests/`` folder beside the rules is not read as rules.
    """
    found: dict[Path, Path] = {}
    missing: list[str] = []
    for path in paths:
        text = str(path)
        if any(ch in text for ch in "*?["):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True)) if Path(m).is_file()]
            if not matches:
                missing.append(f"{text}: no file matches this pattern; expected a rule file, folder or glob")
            candidates = matches
        elif path.is_dir():
            candidates = sorted(
                p
                for p in path.iterdir()
                if p.suffix in RULE_FILE_SUFFIXES and p.is_file() and not p.name.startswith(".")
            )
        elif path.is_file():
            candidates = [path]
        else:
            missing.append(f"{text}: no such file or folder; expected a rule file, folder or glob")
            candidates = []
        for candidate in candidates:
            found.setdefault(candidate.resolve(), candidate)
    return list(found.values()), missing


def load_rules(
    paths: Sequence[Path],
    *,
    kinds: Mapping[str, Kind] = KINDS,
    names: WarehouseNames | None = None,
    timezone: str = "UTC",
) -> RuleSet:
    """Every rule of every file, validated; raise RuleFileError listing every problem found.

    ``names`` (from :func:`warehouse_names`) turns on the check of team / stage / pipeline / rep
    names; ``timezone`` is the company's, in which schedules are read.
    """
    files, problems = rule_files(paths)
    located: list[tuple[int, int, int, str]] = []
    rules: list[Rule] = []
    first_seen: dict[str, str] = {}
    where: dict[str, str] = {}
    for index, path in enumerate(files):
        checker = _FileChecker(path, kinds, names, timezone)
        for rule, rid, mark in checker.run():
            if rid is not None and rid in first_seen:
                checker.report(
                    mark,
                    f"rule '{rid}'",
                    f"id '{rid}' is already used at {first_seen[rid]}; ids must be unique across all rule files",
                )
                continue
            if rid is not None:
                first_seen[rid] = f"{path}:{mark.line}"
            if rule is not None:
                where[rule.id] = first_seen[rule.id]
                rules.append(rule)
        located += [(index, line, column, text) for line, column, text in checker.problems]
    problems += [text for *_, text in sorted(located, key=lambda p: p[:3])]
    if problems:
        raise RuleFileError(problems)
    return RuleSet(tuple(rules), tuple(files), where)


class _FileChecker:
    """Reads one file and collects its rules and problems (with positions)."""

    def __init__(self, path: Path, kinds: Mapping[str, Kind], names: WarehouseNames | None, timezone: str) -> None:
        self.path = path
        self.kinds = kinds
        self.names = names
        self.timezone = timezone
        self.problems: list[tuple[int, int, str]] = []
        self.doc = Positioned(None)

    def report(self, mark: Mark, label: str | None, message: str) -> None:
        prefix = f"{self.path}:{mark.line}:{mark.column}: "
        self.problems.append((mark.line, mark.column, prefix + (f"{label}: " if label else "") + message))

    def run(self) -> Iterator[tuple[Rule | None, str | None, Mark]]:
        """Each declaration: the rule (None when it has problems), its id as written, where the id is."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            before = exc.object[: exc.start]
            mark = Mark(before.count(b"\n") + 1, exc.start - before.rfind(b"\n"))
            self.report(mark, None, "not UTF-8 text; save the file as UTF-8")
            return
        except OSError as exc:
            self.report(Mark(1, 1), None, f"cannot read the file: {exc.strerror}")
            return
        try:
            self.doc = parse(text)
        except YamlError as exc:
            self.report(exc.mark, None, exc.message)
            return
        top = self.doc.value
        if not isinstance(top, dict):
            self.report(self.doc.at(()), None, "expected a mapping with a 'rules:' list at the top of the file")
            return
        for key in top:
            if key != "rules":
                self.report(self.doc.at((key,), key=True), None, f"unknown top-level key '{key}'; expected 'rules:'")
        declared = top.get("rules")
        if declared is None:
            self.report(self.doc.at(("rules",)), None, "expected a 'rules:' list of rule declarations")
            return
        if not isinstance(declared, list):
            self.report(self.doc.at(("rules",)), None, "'rules' must be a list of rule declarations (- id: ...)")
            return
        for i, raw in enumerate(declared):
            rid = raw.get("id") if isinstance(raw, dict) else None
            rid = rid if isinstance(rid, str) and rid else None
            yield self._rule(i, raw), rid, self.doc.at(("rules", i, "id") if rid else ("rules", i))

    # -- one rule ------------------------------------------------------------------------
    def _rule(self, i: int, raw: Any) -> Rule | None:
        base: tuple[str | int, ...] = ("rules", i)
        rid = raw.get("id") if isinstance(raw, dict) else None
        label = f"rule '{rid}'" if isinstance(rid, str) and rid else f"rule #{i + 1}"
        before = len(self.problems)

        def problem(path: tuple[str | int, ...], message: str, *, key: bool = False) -> None:
            self.report(self.doc.at((*base, *path), key=key), label, message)

        if not isinstance(raw, dict):
            problem((), "expected a mapping with id, kind, params... (each rule is a '- id: ...' block)")
            return None
        data = dict(raw)
        for key in DURATION_KEYS:
            if isinstance(data.get(key), str) and parse_duration(data[key]) is not None:
                data[key] = parse_duration(data[key])
        rule: Rule | None = None
        try:
            rule = Rule.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                path, message, at_key = describe_error(err, Rule)
                problem(path, message, key=at_key)
        if isinstance(rid, str) and not RULE_ID.fullmatch(rid):
            problem(("id",), "id must be 1-100 letters, digits, '.', '_' or '-' (it is typed in commands)")
        kind = raw.get("kind")
        if isinstance(kind, str):
            self._kind(kind, raw.get("params"), problem)
        schedule = raw.get("schedule")
        if isinstance(schedule, str):
            try:
                cron_trigger(schedule, self.timezone)
            except ValueError as exc:
                problem(
                    ("schedule",),
                    f"schedule '{schedule}' is not a valid cron line ({exc}); "
                    "expected 5 fields like '0 9 * * 1-5' (minute hour day month weekday, company time zone)",
                )
        summary = raw.get("summary")
        if isinstance(summary, str):
            for message in template_problems(summary):
                problem(("summary",), message)
        scope = raw.get("scope")
        if isinstance(scope, dict):
            self._scope(scope, problem)
        return rule if len(self.problems) == before else None

    def _kind(self, kind: str, params: Any, problem) -> None:
        found = self.kinds.get(kind)
        if found is None:
            known = sorted(self.kinds)
            close = difflib.get_close_matches(kind, known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            expected = ", ".join(known) or "(no kinds installed)"
            problem(("kind",), f"unknown kind '{kind}'; {hint}expected one of: {expected}")
            return
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return  # the Rule model has said params must be a mapping
        model = found.Params
        accepted = {f.alias or name: name for name, f in model.model_fields.items()}
        for key in params:
            if key not in accepted:
                close = difflib.get_close_matches(key, list(accepted), n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                problem(
                    ("params", key),
                    f"unknown params key '{key}' for kind {kind}; {hint}expected: {', '.join(accepted) or '(none)'}",
                    key=True,
                )
        try:
            model.model_validate(params)
        except ValidationError as exc:
            for err in exc.errors():
                if err["type"] == "extra_forbidden":
                    continue  # reported above, with suggestions
                path, message, at_key = describe_error(err, model, prefix="params")
                problem(("params", *path), message, key=at_key)
        if self.names is None:
            return
        for key, name in accepted.items():
            if key in params:
                info = model.model_fields[name]
                for path, name_kind, value in _named_values(info.annotation, info.metadata, params[key], (key,)):
                    message = self.names.problem(name_kind, value)
                    if message:
                        problem(("params", *path), f"params.{'.'.join(map(str, path))}: {message}")

    def _scope(self, scope: dict[str, Any], problem) -> None:
        sources = scope.get("sources")
        if isinstance(sources, list):
            for j, source in enumerate(sources):
                if isinstance(source, str) and source not in SOURCES:
                    problem(("scope", "sources", j), f"unknown source '{source}'; expected salesforce or hubspot")
        if self.names is None:
            return
        for key, name_kind in SCOPE_NAMES.items():
            values = scope.get(key)
            if not isinstance(values, list):
                continue
            for j, value in enumerate(values):
                message = self.names.problem(name_kind, value) if isinstance(value, str) else None
                if message:
                    problem(("scope", key, j), f"scope.{key}: {message}")


def describe_error(err: Any, model: type[BaseModel], prefix: str = "") -> tuple[tuple[str | int, ...], str, bool]:
    """A pydantic error as (path in the file, 'what is wrong, what was expected', points at a key)."""
    loc = tuple(err["loc"])
    at_key = bool(loc) and loc[-1] == "[key]"
    path = tuple(p for p in loc if p != "[key]")
    dotted = ".".join(str(p) for p in ((prefix,) if prefix else ()) + path)
    kind = err["type"]
    if kind == "extra_forbidden":
        accepted = _accepted_keys(model, path[:-1])
        close = difflib.get_close_matches(str(path[-1]), accepted, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return path, f"unknown key '{dotted}'; {hint}expected one of: {', '.join(accepted)}", True
    if kind == "missing":
        return path, f"missing required key '{dotted}'", False
    message = err["msg"].removeprefix("Value error, ")
    message = re.sub(r"^Input should be ", "expected ", message)
    message = message[:1].lower() + message[1:]
    if path and path[-1] in DURATION_KEYS:
        message = "expected a duration such as 30m, 4h, 1d or 2w"
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) else f"got {_short(got)}; "
    return path, f"{dotted}: {shown}{message}", at_key


def _accepted_keys(model: type[BaseModel], path: tuple[str | int, ...]) -> list[str]:
    """The keys accepted at ``path`` inside ``model`` (the rule itself, or its scope / severity)."""
    current: Any = model
    for part in path:
        current = _model_in(current)
        if isinstance(part, int) or current is None:
            continue  # a list item: the item's model is found when unwrapping the list type
        info = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        if info is None:
            return []
        current = info.annotation
    current = _model_in(current)
    return [f.alias or name for name, f in current.model_fields.items()] if current else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (``X``, ``list[X]``, ``X | None``...), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _named_values(
    annotation: Any, metadata: Sequence[Any], value: Any, path: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], NameKind, str]]:
    """The (path, kind, name) of every warehouse name in a params value, following the field's type."""
    marks = [m for m in metadata if isinstance(m, NameOf)]
    if marks:
        if isinstance(value, str):
            yield path, marks[0].kind, value
        return
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        yield from _named_values(args[0], args[1:], value, path)
    elif origin in (typing.Union, types.UnionType):
        seen: set[tuple[Any, ...]] = set()
        for arg in args:
            for hit in _named_values(arg, (), value, path):
                if hit not in seen:
                    seen.add(hit)
                    yield hit
    elif origin in (list, tuple, set, frozenset, Sequence) and isinstance(value, list) and args:
        for j, item in enumerate(value):
            yield from _named_values(args[0], (), item, (*path, j))
    elif origin in (dict, Mapping) and isinstance(value, dict) and len(args) == 2:
        for key, item in value.items():
            yield from _named_values(args[0], (), key, (*path, key))
            yield from _named_values(args[1], (), item, (*path, key))
