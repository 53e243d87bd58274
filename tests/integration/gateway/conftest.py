"""A real server behind the gateway on a loopback port, over a fresh SQLite registry."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aimass.app import create_app
from aimass.gateway.gateway import Gateway
from aimass.gateway.ratelimit import Clock
from aimass.registry import Registry
from aimass.settings import GatewaySettings, Settings
from aimass.testing.models import iris_classifier
from tests.integration.gateway.gatewaytest import Served, ServeFactory


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    settings = Settings(home=tmp_path)
    registry = Registry.from_settings(settings)
    clf, x = iris_classifier()
    registry.register(clf, "iris", sample_input=x[:2], task="classification")
    registry.set_alias("iris", "production", 1)
    registry.register(clf, "other", sample_input=x[:2], task="classification")
    yield registry
    registry.close()


@pytest.fixture
def serve(tmp_path: Path, registry: Registry) -> ServeFactory:
    """``serve(clock=..., **gateway_settings)``: a server in a thread, stopped on exit."""

    @contextlib.contextmanager
    def start(clock: Clock | None = None, **gateway: Any) -> Iterator[Served]:
        from aimass.testing.server import serve_in_thread

        settings = Settings(home=tmp_path, gateway=GatewaySettings(**gateway))
        front = Gateway.from_settings(settings, registry.database, clock=clock or time.time)
        app = create_app(settings, registry=registry, gateway=front)
        with serve_in_thread(app) as url:
            yield Served(url, front, front.keys)

    return start
