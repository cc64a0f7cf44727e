"""Shared by the benchmarks: the machine they ran on, and bench/RESULTS.md by section."""

from __future__ import annotations

import platform
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lines
                if line.startswith("model name")), platform.machine())
    cores = sum(1 for line in lines if line.startswith("processor"))
    return (f"{cores} cores ({cpu}), Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}")


def status_mib(pid: int, field: str) -> float:
    """A memory figure of a running process (`VmRSS`, `VmHWM`) in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def publish(title: str, intro: str, table: list[str], *, write: bool) -> None:
    """Print a benchmark's table under its intro; with `write`, also its RESULTS.md section."""
    text = "\n".join([intro, "", *table])
    print(text)
    if write:
        write_section(title, text)


def write_section(title: str, body: str) -> None:
    """Replace (or add) the `## title` section of bench/RESULTS.md, keeping the others."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    RESULTS.write_text(text)
