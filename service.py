"""salespulse command line: ``python service.py [--config PATH] COMMAND``.

Wiring only: parse arguments, load settings, open the warehouse, hand over to the module
that owns the work, turn errors into exit codes (0 ok, 1 the work failed, 2 bad usage or
configuration) with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from models.errors import ConfigError, FatalError, RuleFileError, SalespulseError
from models.logs import RedactSecrets, configure_logging
from models.settings import Settings, environment_secrets, load_settings

log = logging.getLogger("salespulse")

VAR = Path(__file__).resolve().parent / "var"


class UsageError(Exception):
    """Bad arguments: exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print usage and exit 2 itself
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python service.py",
        description="salespulse: CRM pipeline checks for sales operations, with Slack alerts.",
    )
    parser.add_argument(
        "--config", metavar="PATH", help="settings file (default: settings.toml, or $SALESPULSE_CONFIG)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    sub.add_parser("demo", help="start the sandbox, sync both CRMs into SQLite, run the default rules, show Slack")

    p = sub.add_parser("sync", help="incremental sync of every enabled source (or one)")
    p.add_argument("--source", choices=["salesforce", "hubspot"])
    p.add_argument("--full", action="store_true", help="ignore cursors, re-read everything, mark what vanished")

    p = sub.add_parser("check", help="evaluate rules and deliver alerts")
    p.add_argument("--rule", metavar="ID", help="only this rule (even when disabled)")
    p.add_argument(
        "--dry-run", action="store_true", help="print the findings and the Slack messages; send nothing, change nothing"
    )
    p.add_argument(
        "--as-of",
        metavar="ISO",
        help="evaluate as of 2026-03-31T09:00:00Z, or a date (00:00 company time)",
    )

    p = sub.add_parser("run", help="the daemon: scheduled syncs and rule checks until SIGTERM/SIGINT")
    p.add_argument(
        "--debug-memory",
        type=float,
        metavar="MINUTES",
        help="diagnostic: every MINUTES log the RSS, the C heap, SQLite's memory and the object types that grew "
        "(with PYTHONTRACEMALLOC=8 also the allocation sites; see daemon/memory.py)",
    )

    p = sub.add_parser("sandbox", help="start fake Salesforce, HubSpot and Slack servers with a generated company")
    p.add_argument("--scale", default="small", choices=["small", "medium", "large"])
    p.add_argument("--seed", type=int, default=1)

    p = sub.add_parser("status", help="schema version, row counts, last sync per stream, alert and outbox state")
    p.add_argument("--json", action="store_true", help="the same facts as JSON, for scripts")

    p = sub.add_parser("rules", help="check rule files; run rule unit tests; back-test rules")
    rsub = p.add_subparsers(dest="rules_command", metavar="ACTION", parser_class=_Parser)
    rsub.required = True
    for name, text in (
        ("validate", "check rule files (default: [rules] paths)"),
        ("test", "run rule unit tests (default: the tests/ folders beside the rule files)"),
    ):
        rsub.add_parser(name, help=text).add_argument("paths", nargs="*", metavar="PATH")
    bt = rsub.add_parser("backtest", help="what each rule would have raised at each past instant")
    bt.add_argument("--from", dest="start", required=True, metavar="DATE", help="first instant (date or ISO datetime)")
    bt.add_argument("--to", dest="end", required=True, metavar="DATE", help="last instant (inclusive)")
    bt.add_argument("--every", default="1w", metavar="DURATION", help="step: 1d, 1w, 12h (default 1w)")
    bt.add_argument("--rule", metavar="ID", help="only this rule (even when disabled)")

    p = sub.add_parser("alerts", help="inspect alerts")
    asub = p.add_subparsers(dest="alerts_command", metavar="ACTION", parser_class=_Parser)
    asub.required = True
    lst = asub.add_parser("list", help="alerts with their age, last notification and silences")
    lst.add_argument("--state", choices=["pending", "firing", "resolved"])
    retry = asub.add_parser("retry", help="re-send notifications Slack refused, once the cause is fixed")
    retry.add_argument("ids", nargs="*", type=int, metavar="ID", help="notification ids (default: every failed one)")

    p = sub.add_parser("silence", help="mute an alert by rule and subject for a time")
    ssub = p.add_subparsers(dest="silence_command", metavar="ACTION", parser_class=_Parser)
    ssub.required = True
    add = ssub.add_parser("add", help="add a silence")
    add.add_argument("--rule", required=True, metavar="ID")
    add.add_argument("--subject", metavar="S", help="a rep, team or stage: its name or warehouse id (default: all)")
    add.add_argument("--for", dest="duration", required=True, metavar="DURATION", help="e.g. 90m, 2h, 7d, 1w")
    add.add_argument("--comment", "--reason", dest="comment", required=True, help="why, for the next person")
    add.add_argument("--by", help="who (default: the OS user)")
    sl = ssub.add_parser("list", help="active silences")
    sl.add_argument("--all", action="store_true", help="also ended and expired ones")
    exp = ssub.add_parser("expire", help="end a silence now")
    exp.add_argument("silence_id", type=int)

    p = sub.add_parser("digest", help="post the team digest: attainment, pace, coverage, open alerts, chart")
    p.add_argument("--channel", metavar="C", help="post every team's digest to this channel")
    p.add_argument("--dry-run", action="store_true", help="print the digest; post nothing")

    p = sub.add_parser("quotas", help="validate or load the admins' quota file")
    qsub = p.add_subparsers(dest="quotas_command", metavar="ACTION", parser_class=_Parser)
    qsub.required = True
    for name, text in (("check", "validate the quota file against synced reps"), ("load", "validate and store it")):
        qsub.add_parser(name, help=text).add_argument("path", nargs="?", metavar="PATH")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        print("run 'python service.py --help' for the commands", file=sys.stderr)
        return 2
    # Until the settings are valid, mask what the environment holds: a bad value may be a secret.
    redactor = RedactSecrets(environment_secrets(os.environ))
    try:
        settings = load_settings(args.config)
        redactor = configure_logging(settings.log.level, [*settings.secret_values(), *redactor.secrets])
        return COMMANDS[args.command](args, settings)
    except RuleFileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in rule files; nothing was done", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"configuration error: {redactor.redact(str(exc))}", file=sys.stderr)
        return 2
    except SalespulseError as exc:
        print(f"error: {redactor.redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` and the reader left: not an error of ours.
        sys.stderr.close()
        return 0
    except Exception as exc:
        # A bug: its traceback goes to the log through the redactor (Python's own print would show
        # secrets an SDK put in its message), then the one-line reason.
        if not logging.getLogger().handlers:  # settings never loaded: log through the environment's redactor
            configure_logging("INFO", redactor.secrets)
        log.exception("unexpected error (a bug in salespulse; please report it with this traceback)")
        print(f"error: {redactor.redact(f'{type(exc).__name__}: {exc}')}", file=sys.stderr)
        return 1


# -- commands ------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from rich.console import Console

    from alerts.report import alerting_document, format_alerting
    from models.clock import utc_now
    from models.database import open_warehouse
    from models.inventory import warehouse_status
    from models.status_report import RulesFile, format_daemons, render_json, render_tables, status_document

    engine = open_warehouse(settings.database.url)
    st = warehouse_status(engine, settings.company.fx_rates)
    rules = [RulesFile(path, path.exists()) for path in settings.rules.paths]
    now = utc_now()
    local = now.astimezone(ZoneInfo(settings.company.timezone))
    day_start = datetime.combine(local.date(), datetime.min.time(), local.tzinfo)
    doc = status_document(
        settings.database.display_url,
        st,
        rules,
        now,
        reporting_currency=settings.company.reporting_currency,
        alerting=alerting_document(engine, now, day_start),
    )
    if args.json:
        print(render_json(doc))
    else:
        console = Console()
        # Piped into a file or a pager: wide enough that rows do not wrap.
        render_tables(doc, console if console.is_terminal else Console(width=200))
        print("\n".join(format_alerting(doc["alerting"]) + format_daemons(doc["daemons"])))
    return 0


def cmd_quotas(args: argparse.Namespace, settings: Settings) -> int:
    from models.clock import utc_now
    from models.database import open_warehouse
    from sync.currency import RateBook
    from sync.quota_file import load_quota_file, parse_quota_file, rep_index

    path = Path(args.path) if args.path else settings.quotas.path
    if path is None:
        raise ConfigError("no quota file given; pass PATH or set [quotas] path", source="settings", key="quotas.path")
    engine = open_warehouse(settings.database.url)
    if args.quotas_command == "check":
        with engine.connect() as conn:
            lines = parse_quota_file(path, rep_index(conn), settings.company, RateBook.load(conn, settings.company))
        print(f"{path}: {len(lines)} quota line(s), all valid")
        return 0
    with engine.begin() as conn:
        n = load_quota_file(conn, path, settings.company, utc_now())
    print(f"{path}: stored {n} quota line(s)")
    return 0


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.registry import build_connector, enabled_sources
    from models.clock import utc_now
    from models.database import open_warehouse
    from sync.engine import SyncEngine
    from sync.progress import progress_for_terminal
    from sync.quota_file import load_quota_file

    sources = enabled_sources(settings, args.source)
    engine = open_warehouse(settings.database.url)
    progress = progress_for_terminal()
    sync_engine = SyncEngine(engine, settings, utc_now, progress)
    failures: list[str] = []
    finished: list = []
    try:
        for name in sources:
            # One CRM refusing us (bad credentials, another sync running) must not stop the other.
            try:
                connector = build_connector(name, settings)
                try:
                    results = sync_engine.sync_source(connector, full=args.full)
                finally:
                    connector.close()
            except FatalError as exc:
                log.error("source=%s sync did not start: %s", name, exc)  # noqa: TRY400 - one line is the point
                failures.append(f"{name}: {exc}")
                continue
            failures += [f"{r.source}/{r.stream} {r.status}: {r.error}" for r in results if r.status != "ok"]
            finished += results
    finally:
        close = getattr(progress, "close", None)
        if close:
            close()
    _print_quarantine_summary(finished)
    if settings.quotas.path is not None and failures:
        log.warning(
            "quota file %s not loaded: its reps or rates may be missing after the failures", settings.quotas.path
        )
    elif settings.quotas.path is not None:
        with engine.begin() as conn:
            n = load_quota_file(conn, settings.quotas.path, settings.company, utc_now())
        log.info("quota file %s: stored %d quota line(s)", settings.quotas.path, n)
    if failures:
        degraded = sum(r.status == "degraded" for r in finished)
        what = "did not complete" if degraded < len(failures) else "degraded (quarantined too much)"
        print(f"error: {len(failures)} stream(s) {what}: " + " | ".join(failures), file=sys.stderr)
        return 1
    return 0


def _print_quarantine_summary(results: Sequence) -> None:
    """What this run quarantined, by reason (the log has the same lines)."""
    for r in results:
        for reason, n in r.reasons.most_common(5):
            print(f"quarantined {r.source}/{r.stream}: {n:,} x {reason}")


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    import os
    from functools import partial

    from connectors.registry import enabled_sources
    from daemon.memory import MemoryReport, bound_malloc_arenas
    from daemon.rulejobs import load_and_schedule, watched_rule_files
    from daemon.runner import Daemon
    from daemon.watch import Watched
    from models.clock import utc_now
    from models.database import open_warehouse
    from models.logs import configure_logging
    from models.settings import config_path_from

    configure_logging(settings.log.level, settings.secret_values(), style="readable" if sys.stderr.isatty() else "json")
    if settings.log.level != "DEBUG":
        logging.getLogger("salespulse.sync").setLevel(logging.WARNING)  # the job's line carries the totals
    bound_malloc_arenas()  # before any job thread exists: see daemon/memory.py
    daemon = Daemon(open_warehouse(settings.database.url), settings, enabled_sources(settings), utc_now)
    if args.debug_memory:
        MemoryReport(args.debug_memory * 60, daemon.stop).start()
    rule_paths = settings.rules.paths
    daemon.watch(
        Watched("rule files", lambda: watched_rule_files(rule_paths), partial(load_and_schedule, daemon)),
        required=True,
    )
    config = config_path_from(args.config, os.environ)
    daemon.watch(Watched("channel map", lambda: [config], partial(daemon.reload_channel_map, config)), required=True)
    if settings.quotas.path is not None:
        # Not required at start: the reps it names may arrive with the first sync.
        quota_path = settings.quotas.path
        daemon.watch(Watched("quota file", lambda: [quota_path], daemon.jobs.load_quotas), required=False)
    return daemon.run()


def _usage(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _rules(settings: Settings, engine, rule_id: str | None, paths: Sequence[Path] = ()):
    """The rules to run (all, or the one asked for, enabled even if the file disables it), names checked."""
    from rules.loader import load_rules, warehouse_names

    with engine.connect() as conn:
        names = warehouse_names(conn)
    ruleset = load_rules(paths or settings.rules.paths, names=names, timezone=settings.company.timezone)
    if rule_id is None:
        return ruleset.rules
    rule = ruleset.get(rule_id)
    if rule is None:
        import difflib

        close = difflib.get_close_matches(rule_id, [r.id for r in ruleset.rules], n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"no rule '{rule_id}'; {hint}see 'rules validate' for the rules", source="--rule")
    return (rule.model_copy(update={"enabled": True}),)


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.outbox import flush, pacing_for
    from alerts.pipeline import process
    from alerts.report import format_check
    from alerts.slack import SlackTransport
    from alerts.terminal import print_messages
    from models.clock import utc_now
    from models.database import open_warehouse
    from rules.check import evaluate_rules
    from rules.instants import parse_instant
    from rules.report import console, print_evaluations

    company = settings.company
    try:
        now = parse_instant(args.as_of, company.timezone) if args.as_of else utc_now()
    except ValueError as exc:
        return _usage(f"--as-of: {exc}")
    engine = open_warehouse(settings.database.url)
    rules = _rules(settings, engine, args.rule)
    evaluations = evaluate_rules(rules, engine, company, now)
    out = console()
    print_evaluations(out, evaluations, now, company.reporting_currency, company.timezone)
    result = process(
        evaluations, {r.id: r for r in rules}, engine, settings, now, dry_run=args.dry_run, queued_at=utc_now()
    )
    flushed = None
    if args.dry_run:
        print_messages(((m.channel, m.message.as_json(), _message_note(m)) for m in result.messages), out)
    else:
        flushed = flush(engine, SlackTransport.from_settings(settings.slack), utc_now(), pacing_for(settings.slack))
    for line in format_check(result, flushed):
        print(line)
    failed = [e.rule_id for e in evaluations if e.error]
    if failed:
        print(f"error: {len(failed)} rule(s) could not be evaluated: {', '.join(failed)}", file=sys.stderr)
        return 1
    if flushed is not None and (flushed.failed or (flushed.stopped and not flushed.stopped.startswith("another"))):
        # The alerts are safe in the outbox; the operator must still hear that Slack did not take them.
        reason = flushed.stopped or f"{flushed.failed} notification(s) refused by Slack; see 'status'"
        print(f"error: alerts queued but not all delivered: {reason}", file=sys.stderr)
        return 1
    return 0


def _message_note(message) -> str:
    if message.kind == "update":
        return "(edit of the message that announced these alerts)"
    return "(reply in the thread of the announcing message)" if message.thread_of else ""


def cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.report import format_alerts, list_alerts
    from alerts.silences import list_silences
    from models.clock import utc_now
    from models.database import open_warehouse

    engine = open_warehouse(settings.database.url)
    now = utc_now()
    if args.alerts_command == "retry":
        from alerts.outbox import requeue_failed

        n = requeue_failed(engine, now, args.ids)
        print(f"{n} notification(s) queued again; the next check (or the daemon) sends them")
        return 0
    for line in format_alerts(list_alerts(engine, now, list_silences(engine, now), args.state), now):
        print(line)
    return 0


def cmd_silence(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    from alerts.report import format_silences
    from alerts.silences import add_silence, expire_silence, list_silences, parse_duration
    from models.clock import utc_now
    from models.database import open_warehouse

    engine = open_warehouse(settings.database.url)
    now = utc_now()
    if args.silence_command == "add":
        duration = parse_duration(args.duration)
        _rules(settings, engine, args.rule)  # an unknown rule id is a typo: refuse it with a suggestion
        found = add_silence(
            engine,
            rule_id=args.rule,
            subject=args.subject,
            duration=duration,
            comment=args.comment,
            by=args.by or getpass.getuser(),
            now=now,
        )
        print(f"silence #{found.id} added: " + format_silences([found], now)[0].split(": ", 1)[1])
    elif args.silence_command == "list":
        for line in format_silences(list_silences(engine, now, include_ended=args.all), now):
            print(line)
    else:
        found = expire_silence(engine, args.silence_id, now)
        print(f"silence #{found.id} expired; its alerts notify again from the next check")
    return 0


def cmd_digest(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.digest import plan_digests, queue_digests
    from alerts.outbox import flush, pacing_for
    from alerts.report import open_alerts
    from alerts.slack import SlackTransport
    from alerts.terminal import print_messages
    from models.clock import utc_now
    from models.database import open_warehouse
    from rules.model import Warehouse
    from rules.report import console
    from rules.standing import standing

    engine = open_warehouse(settings.database.url)
    now = utc_now()
    with engine.connect() as conn:
        where = standing(Warehouse(conn, settings.company), now)
    digests = plan_digests(
        where, open_alerts(engine), settings.slack, channel=args.channel, team_weight=settings.slack.digest_team_weight
    )
    if args.dry_run:
        chart = " (+ attainment-vs-pace chart)" if settings.slack.digest_chart else ""
        print_messages(((d.channel, d.message.as_json(), chart) for d in digests), console())
        return 0
    queue_digests(engine, digests, now, period=None, secrets=settings.secret_values())
    delivered = flush(engine, SlackTransport.from_settings(settings.slack), now, pacing_for(settings.slack))
    if delivered.stopped or delivered.failed:
        print(
            f"digest queued for {len(digests)} channel(s); not all delivered: "
            f"{delivered.stopped or '; '.join(delivered.errors)} (the daemon's outbox retries; see `status`)",
            file=sys.stderr,
        )
        return 1
    print(f"digest posted to {len(digests)} channel(s): {', '.join(d.channel for d in digests)}")
    return 0


def cmd_rules(args: argparse.Namespace, settings: Settings) -> int:
    from models.database import open_warehouse

    if args.rules_command == "test":
        from rules.ruletest import default_test_paths, format_run, run_rule_tests

        paths = [Path(p) for p in args.paths] or default_test_paths(settings.rules.paths)
        run = run_rule_tests(paths)
        for line in format_run(run):
            print(line)
        for problem in run.problems:
            print(problem, file=sys.stderr)
        return 2 if run.problems else 1 if run.failed else 0
    if args.rules_command == "validate":
        from rules.loader import load_rules, warehouse_names

        paths = [Path(p) for p in args.paths] or settings.rules.paths
        try:
            with open_warehouse(settings.database.url).connect() as conn:
                names = warehouse_names(conn)
        except FatalError as exc:
            print(f"warning: team, stage and rep names not checked: {exc}", file=sys.stderr)
            names = None
        ruleset = load_rules(paths, names=names, timezone=settings.company.timezone)
        checked = "" if names is None or not names.reps else ", names checked against the warehouse"
        print(f"{len(ruleset.rules)} rule(s) in {len(ruleset.files)} file(s): valid{checked}")
        return 0
    from rules.backtest import backtest, backtest_instants
    from rules.instants import parse_duration, parse_instant
    from rules.report import console, print_backtest

    tz = settings.company.timezone
    every = parse_duration(args.every)
    if every is None:
        return _usage(f"--every '{args.every}': expected a duration such as 1d, 1w or 12h")
    try:
        moments = backtest_instants(parse_instant(args.start, tz), parse_instant(args.end, tz), every)
    except ValueError as exc:
        return _usage(str(exc))
    engine = open_warehouse(settings.database.url)
    rules = _rules(settings, engine, args.rule)
    runs = backtest(rules, engine, settings.company, moments)
    print_backtest(console(), [r.id for r in rules if r.enabled], runs, tz)
    return 0


def _start_sandbox(scale: str, seed: int, workdir: Path):
    from sandbox.company import SCALES
    from sandbox.runner import Sandbox

    return Sandbox(workdir, scale=SCALES[scale], seed=seed).start()


def cmd_sandbox(args: argparse.Namespace, _settings: Settings) -> int:
    import signal
    import threading

    print(f"generating or reusing the {args.scale} company (seed {args.seed}) ...", file=sys.stderr, flush=True)
    box = _start_sandbox(args.scale, args.seed, VAR / "sandbox")
    print("# fake Salesforce, HubSpot and Slack are up; point salespulse at them with:")
    for name, value in box.env().items():
        print(f"export {name}='{value}'")
    print(f"# ground truth of planted problems: {box.company_dir / 'ground_truth.json'}")
    print("# Ctrl-C (or SIGTERM) stops the servers", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    box.stop()
    return 0


def cmd_demo(args: argparse.Namespace, _settings: Settings) -> int:
    """The whole product once, against the sandbox: sync, check the default pack, deliver, digest, show."""
    import os
    import time
    from datetime import datetime

    from alerts.digest import plan_digests, queue_digests
    from alerts.outbox import flush, pacing_for
    from alerts.pipeline import process
    from alerts.report import open_alerts
    from alerts.slack import SlackTransport
    from models.database import open_warehouse
    from rules.check import evaluate_rules
    from rules.model import Warehouse
    from rules.report import console
    from rules.standing import standing
    from sandbox.demo import rows_per_source, show_slack, summary

    started = time.monotonic()
    out = console()
    workdir = VAR / "demo"
    out.print("starting the sandbox: a generated company in fake Salesforce and HubSpot, and a fake Slack ...")
    box = _start_sandbox("small", 1, VAR / "sandbox")
    try:
        db = workdir / "warehouse.db"
        for stale in workdir.glob("warehouse.db*"):
            stale.unlink()
        os.environ.update(box.env())
        os.environ["SALESPULSE_DATABASE__URL"] = f"sqlite:///{db}"
        os.environ["SALESPULSE_RULES__PATHS"] = str(Path(__file__).resolve().parent / "rules.d")
        os.environ["SALESPULSE_SLACK__POST_INTERVAL_S"] = "0"  # the fake Slack does not rate-limit
        settings = load_settings(args.config)
        out.print(f"syncing both CRMs into {db} ...")
        code = cmd_sync(argparse.Namespace(source=None, full=False), settings)
        engine = open_warehouse(settings.database.url)
        # The company was generated up to the end of its anchor day: judge it as of then.
        now = datetime.fromisoformat(box.truth.generator["anchor_end"].replace("Z", "+00:00"))
        rules = _rules(settings, engine, None)
        out.print(f"checking {len(rules)} rules of the default pack as of {now:%Y-%m-%d %H:%M}Z ...")
        evaluations = evaluate_rules(rules, engine, settings.company, now)
        process(evaluations, {r.id: r for r in rules}, engine, settings, now)
        slack = SlackTransport.from_settings(settings.slack)
        delivered = flush(engine, slack, now, pacing_for(settings.slack))  # the queue's clock: as of the check
        with engine.connect() as conn:
            where = standing(Warehouse(conn, settings.company), now)
        digests = plan_digests(
            where, open_alerts(engine), settings.slack, team_weight=settings.slack.digest_team_weight
        )
        queue_digests(engine, digests, now, period=None, secrets=settings.secret_values())
        posted = flush(engine, slack, now, pacing_for(settings.slack))
        out.print(f"delivered {delivered.sent} alert message(s) and {len(digests)} digest(s) to the sandbox Slack\n")
        shown = show_slack(box.slack, out, workdir)
        summary(
            out,
            rows=rows_per_source(engine),
            evaluations=evaluations,
            shown=shown,
            database=db,
            ground_truth=box.company_dir / "ground_truth.json",
            as_of=now.date(),
            seconds=time.monotonic() - started,
        )
        failed = [e.rule_id for e in evaluations if e.error]
        return code or (1 if failed or delivered.stopped or posted.stopped else 0)
    finally:
        box.stop()


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "demo": cmd_demo,
    "sync": cmd_sync,
    "check": cmd_check,
    "run": cmd_run,
    "sandbox": cmd_sandbox,
    "status": cmd_status,
    "rules": cmd_rules,
    "alerts": cmd_alerts,
    "silence": cmd_silence,
    "digest": cmd_digest,
    "quotas": cmd_quotas,
}


if __name__ == "__main__":
    sys.exit(main())
