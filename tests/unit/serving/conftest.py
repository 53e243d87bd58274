"""Fixtures for the serving engine: a real SQLite registry and tiny real models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aimass.settings import Settings
from aimass.testing.models import iris_classifier
from tests.unit.serving.serving_doubles import SpyRegistry


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def iris() -> tuple[Any, np.ndarray[Any, Any]]:
    return iris_classifier()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[SpyRegistry]:
    opened = SpyRegistry.from_settings(Settings(home=tmp_path / "home"))
    assert isinstance(opened, SpyRegistry)
    yield opened
    opened.close()
