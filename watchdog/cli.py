"""The `crdb-watchdog` command: run, check, once, status, test, notify-test, silence,
simulate, demo.

Exit codes: 0 ok, 1 a finding (invalid input, a failed poll or delivery), 2 a usage error.
A user's mistake is a message naming the file, line or field, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watchdog import __version__
from watchdog.config import Config, load_config
from watchdog.logs import configure_logging
from watchdog.rules import RuleSet, load_rules
from watchdog.sourcefile import InvalidInput, Problem
from watchdog.store import Store, StoreError

log = logging.getLogger("watchdog")


def load_all(config_path: Path) -> tuple[Config, RuleSet]:
    """Config, rules, templates and channels, with every problem of all of them reported
    together: what `check` validates is exactly what `run` (and a reload) accepts."""
    from watchdog.notify import Renderer

    config = load_config(config_path)
    problems: list[Problem] = []
    try:
        rules = load_rules(config.rules)
    except InvalidInput as exc:
        problems += exc.problems
    try:
        Renderer(config.templates, {}).validate()
    except InvalidInput as exc:
        problems += exc.problems
    problems += _channel_problems(config, config_path)
    if problems:
        raise InvalidInput(problems)
    return config, rules


def _channel_problems(config: Config, config_path: Path) -> list[Problem]:
    """Every channel URL must be one Apprise can use; the message shows only its scheme
    (Apprise's own complaint, which quotes the whole URL, is kept out of the log)."""
    import apprise

    problems = []
    for name, channel in config.channels.items():
        for index, url in enumerate(channel.urls, start=1):
            with _quiet("apprise"):
                usable = apprise.Apprise.instantiate(url.get_secret_value()) is not None
            if not usable:
                scheme = url.get_secret_value().partition("://")[0]
                problems.append(Problem(str(config_path), None,
                                        f"channels.{name}: URL {index} ({scheme}://…) is not "
                                        "one Apprise can use (unknown scheme, or a missing or "
                                        "invalid part)"))
    return problems


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


# Commands ------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    config, rules = load_all(args.config)
    print(f"{args.config}: ok: {len(config.clusters)} cluster(s), {len(rules.rules)} rules, "
          f"{len(config.channels)} channel(s), {len(config.routes)} route(s)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from watchdog.service import serve

    if args.log_format is None:
        configure_logging(args.log_level, load_config(args.config).log.format)
    return asyncio.run(serve(args.config, load_all))


def cmd_status(args: argparse.Namespace) -> int:
    from watchdog.status import render_text, report

    config = load_config(args.config)
    if not config.state.exists():
        print(f"{config.state}: no state yet (has the service run with this config?)",
              file=sys.stderr)
        return 1
    now = datetime.now(UTC)
    with contextlib.closing(Store(config.state)) as store:
        status = report(store, now)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(render_text(status, now))
    return 0


def cmd_once(args: argparse.Namespace) -> int:
    from watchdog.service import run_once

    config, rules = load_all(args.config)
    with contextlib.closing(Store(config.state)) as store:
        report = asyncio.run(run_once(config, rules, store, dry_run=args.dry_run))
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        _print_report(report)
    return 1 if report["errors"] else 0


def _print_report(report: dict[str, Any]) -> None:
    for alert in report["alerts"]:
        print(f"{alert['severity'].upper():8} {alert['cluster']} {alert['alert']}: "
              f"{alert['summary']}")
    for error in report["errors"]:
        where = error.get("source") or error.get("rule")
        print(f"ERROR    {error['cluster']} {where}: {error['message']}", file=sys.stderr)
    if not report["alerts"] and not report["errors"]:
        print("no alert conditions hold")


def cmd_test(args: argparse.Namespace) -> int:
    from watchdog.ruletest import run_files

    if args.log_level != "debug":  # the runner reports rule errors and transitions that matter
        logging.getLogger("watchdog.evaluation").setLevel(logging.CRITICAL)
    return run_files(args.files)


def cmd_simulate(args: argparse.Namespace) -> int:
    from watchdog.simulator import SimConfig, serve

    serve(SimConfig(nodes=args.nodes, port=args.port, control_port=args.control_port,
                    liveness_ttl=args.liveness_ttl,
                    time_until_store_dead=args.time_until_store_dead))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from watchdog.demo import run_demo

    if args.log_level == "info":
        logging.getLogger().setLevel(logging.WARNING)  # the demo narrates; logs would clutter it

    return asyncio.run(run_demo(keep_running=args.keep_running))


def cmd_notify_test(args: argparse.Namespace) -> int:
    """A sample page through one channel; per URL (masked), delivered or why not."""
    from watchdog.notify import Renderer, notify_test

    config = load_config(args.config)
    channel = config.channels.get(args.channel)
    if channel is None:
        print(f"{args.config}: no channel {args.channel!r}; channels: "
              f"{', '.join(sorted(config.channels))}", file=sys.stderr)
        return 2
    renderer = Renderer(config.templates, {c.name: c.urls[0] for c in config.clusters})
    title, body = renderer.sample(channel.format)
    results = asyncio.run(notify_test(
        [url.get_secret_value() for url in channel.urls], f"[TEST] {title}", body,
        channel.format, channel=args.channel, timeout=config.delivery.timeout))
    for result in results:
        outcome = "delivered" if result.ok else f"FAILED: {result.reason}"
        print(f"{result.url}  {outcome} ({result.elapsed * 1000:.0f} ms)")
    return 0 if all(result.ok for result in results) else 1


def cmd_silence_add(args: argparse.Namespace) -> int:
    from watchdog.notify.silences import KEEP_ENDED, describe, new_silence

    config = load_config(args.config)
    now = datetime.now(UTC)
    try:
        silence = new_silence(args.match, args.duration, args.comment, args.author, now)
    except ValueError as exc:
        print(f"crdb-watchdog silence add: {exc}", file=sys.stderr)
        return 2
    with contextlib.closing(Store(config.state)) as store:
        store.add_silence(silence, forget_ended_before=now - KEEP_ENDED)
    print(describe(silence, now))
    return 0


def cmd_silence_list(args: argparse.Namespace) -> int:
    from watchdog.notify.silences import describe

    config = load_config(args.config)
    now = datetime.now(UTC)
    with contextlib.closing(Store(config.state)) as store:
        silences = store.silences(active_at=None if args.all else now)
    for silence in silences:
        print(describe(silence, now))
    if not silences:
        print("no silences" if args.all else "no active silences")
    return 0


def cmd_silence_expire(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with contextlib.closing(Store(config.state)) as store:
        expired = store.expire_silence(args.id, datetime.now(UTC))
    if not expired:
        print(f"no active silence {args.id}", file=sys.stderr)
        return 1
    print(f"{args.id} expired")
    return 0


# Parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crdb-watchdog",
                                     description="Alerting for CockroachDB clusters.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("WATCHDOG_LOG_LEVEL", "info"),
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default=os.environ.get("WATCHDOG_LOG_FORMAT"),
                        choices=["auto", "text", "json"],
                        help="auto (the default; or `log.format` in the config): journald "
                             "severity prefixes under systemd, timestamped text elsewhere")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], text: str,
                config: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler)
        if config:
            sub.add_argument("-c", "--config", type=Path, required=True, metavar="FILE")
        return sub

    command("run", cmd_run, "run the service in the foreground (systemd Type=notify)")
    command("check", cmd_check, "validate the config, rule files and templates")
    once = command("once", cmd_once, "poll every cluster once and print what holds now")
    once.add_argument("--dry-run", action="store_true", help="send nothing, store nothing")
    once.add_argument("--json", action="store_true", help="print JSON")
    status = command("status", cmd_status,
                     "show alerts, silences and the last poll per cluster and source")
    status.add_argument("--json", action="store_true", help="print JSON")
    notify = command("notify-test", cmd_notify_test,
                     "send a sample page through one channel and report each URL")
    notify.add_argument("--channel", required=True, metavar="NAME")
    _add_silence_commands(commands)
    test = command("test", cmd_test, "run rule unit tests (recorded responses over time, "
                   "expected alerts)", config=False)
    test.add_argument("files", nargs="+", type=Path, metavar="FILE")
    simulate = command("simulate", cmd_simulate, "serve a simulated cluster", config=False)
    simulate.add_argument("--nodes", type=int, default=3)
    simulate.add_argument("--port", type=int, default=26080, help="node 1's port; node i: +i-1")
    simulate.add_argument("--control-port", type=int, default=0)
    simulate.add_argument("--liveness-ttl", type=float, default=9.0)
    simulate.add_argument("--time-until-store-dead", type=float, default=300.0)
    demo = command("demo", cmd_demo, "a scripted incident on a simulated cluster",
                   config=False)
    demo.add_argument("--keep-running", action="store_true")
    return parser


def _add_silence_commands(commands: Any) -> None:
    silence = commands.add_parser("silence", help="add, list or expire silences",
                                  description="Silences mute matching firing alerts for a "
                                  "while; the running service honours them at once.")
    actions = silence.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, handler: Callable[[argparse.Namespace], int],
               text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler)
        sub.add_argument("-c", "--config", type=Path, required=True, metavar="FILE")
        return sub

    add = action("add", cmd_silence_add, "mute the firing alerts that match every --match")
    add.add_argument("--match", action="append", required=True, type=_matcher,
                     metavar="LABEL=VALUE", help="also LABEL!=VALUE, LABEL=~REGEX, "
                     "LABEL!~REGEX; repeat to narrow (alertname, cluster, node_id, any label)")
    add.add_argument("--duration", required=True, type=_duration, help="such as 30m or 2h")
    add.add_argument("--comment", required=True, help="why, for whoever reads `silence list`")
    add.add_argument("--author", default=_user(), help="default: the current user")
    listing = action("list", cmd_silence_list, "list the active silences")
    listing.add_argument("--all", action="store_true", help="also those that ended lately")
    expire = action("expire", cmd_silence_expire, "end a silence now")
    expire.add_argument("id", metavar="ID")


def _matcher(text: str) -> Any:
    from watchdog.notify.silences import parse_matcher

    try:
        return parse_matcher(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> Any:
    from watchdog.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format or "auto")
    try:
        code: int = args.handler(args)
    except InvalidInput as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except StoreError as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
