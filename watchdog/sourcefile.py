"""YAML files that remember where each value came from, so errors can say `path:line: message`.

Config and rule files both go through here: PyYAML parses, and a walk over the composed node
tree records the line of every key and list item (and refuses duplicate keys, which PyYAML
would silently collapse).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One error in a user's file, printed as `path:line: message`."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


class InvalidInput(Exception):
    """One or more problems in a user's files; never a traceback for the user."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class SourceFile:
    """A parsed YAML document and the line of every value in it."""

    path: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Iterable[str | int]) -> int | None:
        """The line of the deepest known prefix of `loc` (a pydantic error location)."""
        parts = tuple(loc)
        for end in range(len(parts), -1, -1):
            line = self.lines.get(parts[:end])
            if line is not None:
                return line
        return None

    def problem(self, loc: Iterable[str | int], message: str) -> Problem:
        return Problem(self.path, self.line_of(loc), message)

    def validation_problems(self, error: ValidationError, prefix: Loc = ()) -> list[Problem]:
        """Turn a pydantic ValidationError on (a part of) this file into located problems."""
        problems = []
        for item in error.errors(include_url=False, include_input=False):
            loc = prefix + tuple(part for part in item["loc"] if isinstance(part, str | int))
            field_name = ".".join(str(part) for part in loc) or "(top level)"
            message = item["msg"]
            if item["type"] == "extra_forbidden":
                message = "unknown key"
            problems.append(self.problem(loc, f"{field_name}: {message}"))
        return problems


def parse_yaml(text: str, path: str) -> SourceFile:
    """Parse one YAML document, raising InvalidInput with the line of any syntax error."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise InvalidInput([Problem(path, line, f"invalid YAML: {exc.problem}")]) from None
    except yaml.YAMLError as exc:
        raise InvalidInput([Problem(path, None, f"invalid YAML: {exc}")]) from None
    source = SourceFile(path, data)
    duplicates: list[Problem] = []
    if node is not None:
        _record_lines(node, (), source, duplicates)
    if duplicates:
        raise InvalidInput(duplicates)
    return source


def load_yaml(path: Path) -> SourceFile:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput([Problem(str(path), None, f"cannot read: {_reason(exc)}")]) from None
    return parse_yaml(text, str(path))


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _record_lines(node: yaml.Node, loc: Loc, source: SourceFile, out: list[Problem]) -> None:
    source.lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                out.append(Problem(source.path, key_node.start_mark.line + 1,
                                   f"duplicate key {key!r}"))
            seen.add(key)
            _record_lines(value_node, (*loc, key), source, out)
            source.lines[(*loc, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*loc, index), source, out)
