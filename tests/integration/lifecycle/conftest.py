"""A local registry, its run store and a real server over both, shared by a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aimass.app import create_app
from aimass.lifecycle.runs import RunStore
from aimass.registry import Registry
from aimass.settings import Settings
from aimass.testing.server import serve_in_thread


@pytest.fixture(scope="module")
def lc_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("lifecycle-home"))


@pytest.fixture(scope="module")
def lc_registry(lc_settings: Settings) -> Iterator[Registry]:
    registry = Registry.from_settings(lc_settings)
    yield registry
    registry.close()


@pytest.fixture(scope="module")
def runs(lc_registry: Registry) -> RunStore:
    return RunStore.of(lc_registry)


@pytest.fixture(scope="module")
def base_url(lc_settings: Settings, lc_registry: Registry) -> Iterator[str]:
    app = create_app(lc_settings, registry=lc_registry)
    with serve_in_thread(app) as url:
        yield url
