"""The `crdb-watchdog` command: run, check, once, simulate, demo.

Exit codes: 0 ok, 1 a finding (invalid input, a failed poll or delivery), 2 a usage error.
A user's mistake is a message naming the file, line or field, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from watchdog import __version__
from watchdog.config import Config, load_config
from watchdog.rules import RuleSet, load_rules
from watchdog.sourcefile import InvalidInput
from watchdog.store import Store, StoreError

log = logging.getLogger("watchdog")

_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                    logging.CRITICAL: 2}


class _JournalFormatter(logging.Formatter):
    """journald adds its own timestamps; a `<N>` prefix carries the severity."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{record.name}: {super().format(record)}"


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apprise").setLevel(logging.WARNING)


def load_all(config_path: Path) -> tuple[Config, RuleSet]:
    """Config and rules, with every problem of both reported together."""
    config = load_config(config_path)
    return config, load_rules(config.rules)


# Commands ------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    config, rules = load_all(args.config)
    from watchdog.notify import Renderer

    Renderer(config.templates, {}).validate()
    print(f"{args.config}: ok: {len(config.clusters)} cluster(s), {len(rules.rules)} rules, "
          f"{len(config.channels)} channel(s), {len(config.routes)} route(s)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from watchdog.service import serve

    return asyncio.run(serve(args.config, load_all))


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


# Parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crdb-watchdog",
                                     description="Alerting for CockroachDB clusters.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("WATCHDOG_LOG_LEVEL", "info"),
                        choices=["debug", "info", "warning", "error"])
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
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
