"""Shared fixtures: registries on every metadata and artifact backend.

PostgreSQL is the real server on 127.0.0.1:5432 (each test session gets its
own fresh database); S3 is moto's real HTTP server on a loopback port. Where a
backend cannot be reached the tests skip with the reason, except under CI,
where everything must run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aimass.registry import Registry
from aimass.settings import RegistrySettings, Settings

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def pytest_configure(config: pytest.Config) -> None:
    """OpenMP threads wait for work asleep, in this process and every one it starts.

    The suite's processes (two xdist workers and the servers and commands they
    start) share the machine's cores: a thread spinning while it waits takes a
    core from one of them. The policy changes no result, only who gets the CPU.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with a test marked ``slow`` first, each module's own order kept.

    ``make test`` hands whole modules to two xdist workers in this order, so
    the long ones start early and the quick ones even out the end.
    """
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must run every backend)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty PostgreSQL databases, all dropped at the end of the session."""
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        _unavailable(f"PostgreSQL on 127.0.0.1:5432 is not reachable: {exc}")
    created: list[str] = []

    def create() -> str:
        name = f"aimass_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"

    yield create
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        for name in created:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-compatible server, listening on a loopback port chosen by the OS."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket on the moto server; boto3 reads these dummy credentials from the env."""
    import boto3

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    bucket = f"aimass-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return bucket


BACKENDS = ["sqlite-local", "postgres-local", "sqlite-s3", "postgres-s3"]


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for a fresh registry on each metadata and artifact backend pair."""
    database, artifacts = str(request.param).split("-")
    registry: dict[str, Any] = {}
    if database == "postgres":
        registry["database_url"] = request.getfixturevalue("postgres_database")()
    if artifacts == "s3":
        registry["artifact_url"] = f"s3://{request.getfixturevalue('s3_bucket')}/models"
        registry["s3_endpoint_url"] = request.getfixturevalue("s3_endpoint")
    return Settings(home=tmp_path / "home", registry=RegistrySettings(**registry))


@pytest.fixture
def registry(settings: Settings) -> Iterator[Registry]:
    """A registry on the backend pair of the ``settings`` parameter."""
    opened = Registry.from_settings(settings)
    yield opened
    opened.close()


@pytest.fixture
def local_settings(tmp_path: Path) -> Settings:
    """Settings for the embedded defaults: SQLite and a local directory under a temp home."""
    return Settings(home=tmp_path / "home")


class PickleTrap:
    """Pickles to a call that creates :attr:`marker`: proof that something unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


@pytest.fixture
def pickle_trap(tmp_path: Path) -> PickleTrap:
    """A trap to pickle into a file that must never be opened; its marker says if it was."""
    return PickleTrap(tmp_path / "unpickled")
