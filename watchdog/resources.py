"""Where the built-in rule pack and templates are: inside the wheel, or beside the source."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def builtin_dir(name: str) -> Path:
    """`rules` or `templates`: `watchdog/<name>` in the wheel, top-level in a checkout."""
    installed = _PACKAGE / name
    return installed if installed.is_dir() else _PACKAGE.parent / name
