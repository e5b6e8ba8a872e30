"""The rule files in use and their schedule: one check job per enabled rule, at its cron.

Loading is all or nothing: the files are read and every rule validated (``load_rules``,
names checked against the warehouse once it has any) before the schedule is touched, so a
refused edit leaves the running rules and their jobs exactly as they were.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from rules.loader import load_rules, rule_files, warehouse_names
from rules.schedule import cron_trigger

if TYPE_CHECKING:
    from daemon.runner import Daemon

PREFIX = "check:"


def watched_rule_files(paths: list[Path]) -> list[Path]:
    """What to fingerprint: the rule files, and the folders (a file added or removed changes them)."""
    files, _missing = rule_files(paths)
    return [*paths, *files]


def load_and_schedule(daemon: Daemon) -> str:
    """Load the rule files; on success, make the check jobs match them. Raises RuleFileError to refuse."""
    settings = daemon.settings
    tz = settings.company.timezone
    with daemon.engine.connect() as conn:
        names = warehouse_names(conn)
    ruleset = load_rules(settings.rules.paths, names=names, timezone=tz)
    enabled = [rule for rule in ruleset.rules if rule.enabled]
    triggers = {rule.id: cron_trigger(rule.schedule, tz) for rule in enabled}
    daemon.jobs.rules = {rule.id: rule for rule in ruleset.rules}
    wanted = {PREFIX + rule.id for rule in enabled}
    for job in daemon.scheduler.get_jobs():
        if job.id.startswith(PREFIX) and job.id not in wanted:
            daemon.remove_job(job.id)
    for rule in enabled:
        daemon.add_job(PREFIX + rule.id, "check", triggers[rule.id], partial(daemon.jobs.check, rule.id))
    off = len(ruleset.rules) - len(enabled)
    return f"{len(enabled)} rule(s) scheduled from {len(ruleset.files)} file(s)" + (f", {off} disabled" if off else "")
