"""Every server process converges on a change: prefork workers within 2 s, over PostgreSQL too.

The worker test runs a real ``aimass serve --workers 2`` at the default poll
interval, as users run it; the PostgreSQL test runs a server in a thread over
a fresh PostgreSQL registry, for the store's other SQL dialect.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
from pydantic import SecretStr

from aimass.app import create_app
from aimass.deployments.store import DeploymentStore
from aimass.registry import Registry
from aimass.server.identity import WORKER_HEADER
from aimass.settings import DeploymentSettings, RegistrySettings, Settings
from aimass.testing.server import serve_in_process, serve_in_thread
from tests.integration.deployments.conftest import answered, infer, register_iris, spec, wait_until
from tests.integration.processes import registry_env


def test_two_workers_converge_within_two_seconds(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    registry = Registry.from_settings(settings)
    try:
        register_iris(registry, versions=2)
        store = DeploymentStore(registry.database)
        store.create("prod", spec(("iris:1", 100)), by="test")
        with (
            serve_in_process(["--workers", "2"], env=registry_env(settings)) as served,
            # A connection per request, so that requests spread over both workers.
            httpx.Client(
                base_url=served.url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
            ) as client,
        ):
            latest: dict[str, str] = {}

            def serving(*versions: str) -> bool:
                response = infer(client, "prod")
                latest[response.headers[WORKER_HEADER]] = answered(response)
                return len(latest) == 2 and set(latest.values()) <= set(versions)

            wait_until(lambda: serving("iris:1"), what="both workers answer")
            assert set(latest.values()) == {"iris:1"}
            store.change("prod", spec(("iris:2", 100)), by="test", kind="set")
            took = wait_until(lambda: serving("iris:2"), what="both workers serve iris:2")
            assert took < 2.0, f"the workers converged in {took:.2f}s"
    finally:
        registry.close()


def test_the_postgresql_path(tmp_path: Path, postgres_database: Callable[[], str]) -> None:
    settings = Settings(
        home=tmp_path,
        registry=RegistrySettings(database_url=SecretStr(postgres_database())),
        deployments=DeploymentSettings(poll_interval_s=0.05),
    )
    registry = Registry.from_settings(settings)
    try:
        register_iris(registry, versions=3)
        store = DeploymentStore(registry.database)
        store.create("pg", spec(("iris:1", 50), ("iris@production", 50)), by="test")
        with (
            serve_in_thread(create_app(settings, registry=registry)) as url,
            httpx.Client(base_url=url, timeout=30) as client,
        ):
            assert answered(infer(client, "pg")) == "iris:1"  # both targets are iris:1
            store.change("pg", spec(("iris:2", 100)), by="test", kind="set")
            wait_until(lambda: answered(infer(client, "pg")) == "iris:2", what="set on pg")
            # A deployment that follows an alias rolls forward when the alias moves.
            store.change("pg", spec(("iris@production", 100)), by="test", kind="set")
            wait_until(lambda: answered(infer(client, "pg")) == "iris:1", what="follows alias")
            started = time.monotonic()
            registry.set_alias("iris", "production", 3)
            wait_until(lambda: answered(infer(client, "pg")) == "iris:3", what="alias moved")
            assert time.monotonic() - started < 2.0
    finally:
        registry.close()
