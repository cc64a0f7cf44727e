"""Shared fixtures: the reference API responses, copied into tests/data/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"


def fixture_json(name: str) -> Any:
    return json.loads((DATA / name).read_text())


@pytest.fixture
def data_dir() -> Path:
    return DATA
