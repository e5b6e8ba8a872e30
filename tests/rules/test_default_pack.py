"""The default pack in rules.d/: it loads with the real kinds, and its rule tests (rules.d/tests/) pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.loader import load_rules, rule_files
from rules.ruletest import format_run, run_rule_tests
from rules.yamlpos import parse

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "rules.d"
TEST_FILES = sorted((PACK / "tests").glob("*.yaml"))


def test_the_default_pack_loads_with_every_kind_it_names() -> None:
    ruleset = load_rules([PACK])
    assert ruleset.rules
    assert all(rule.enabled for rule in ruleset.rules)


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_the_packs_rule_tests_pass(path: Path) -> None:
    run = run_rule_tests([path])
    assert run.problems == []
    assert run.results
    assert not run.failed, "\n".join(format_run(run))


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_every_rule_of_a_tested_file_is_seen_firing(path: Path) -> None:
    """Each rule of the rule files a test file names is expected to fire in at least one of its tests."""
    spec = parse(path.read_text(encoding="utf-8")).value
    files, _ = rule_files([path.parent / name for name in spec["rule_files"]])
    declared = {rule.id for rule in load_rules(files).rules}
    fired = {e["rule"] for case in spec["tests"] for e in case.get("expect") or ()}
    assert declared - fired == set()
