"""A real server routing deployments, over a SQLite registry of iris versions; and its helpers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimass.app import create_app
from aimass.deployments.spec import DeploymentSpec, Sticky, Target
from aimass.deployments.store import DeploymentStore
from aimass.registry import Registry
from aimass.settings import DeploymentSettings, Settings
from aimass.testing.models import iris_classifier
from aimass.testing.server import serve_in_thread

IRIS_VERSIONS = 4
ROW = {
    "inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]
}


def spec(*targets: tuple[str, float], sticky: str | None = None) -> DeploymentSpec:
    """A spec of ``(ref, percent)`` targets."""
    return DeploymentSpec(
        targets=tuple(Target(ref=ref, weight=round(percent * 10)) for ref, percent in targets),
        sticky=None if sticky is None else Sticky.parse(sticky),
    ).checked()


def answered(response: httpx.Response) -> str:
    """The version that answered a successful inference, checked against the body."""
    assert response.status_code == 200, response.text
    version = response.headers["x-aimass-version"]
    body = response.json()
    assert version == f"{body['model_name']}:{body['model_version']}"
    return version


def wait_until(check: Callable[[], bool], *, within: float = 10.0, what: str = "") -> float:
    """Poll ``check`` until it holds; the seconds it took. Fails after ``within`` seconds."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, f"not within {within:g}s: {what}"
        time.sleep(0.01)
    return time.monotonic() - started


def register_iris(registry: Registry, versions: int = IRIS_VERSIONS) -> None:
    """``iris`` versions 1..``versions`` (the same model: the header tells them apart)."""
    clf, x = iris_classifier()
    for _ in range(versions):
        registry.register(clf, "iris", sample_input=x[:2], task="classification")
    registry.set_alias("iris", "production", 1)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deployments-home")


@pytest.fixture(scope="module")
def dsettings(home: Path) -> Settings:
    return Settings(home=home, deployments=DeploymentSettings(poll_interval_s=0.05))


@pytest.fixture(scope="module")
def dregistry(dsettings: Settings) -> Iterator[Registry]:
    registry = Registry.from_settings(dsettings)
    register_iris(registry)
    yield registry
    registry.close()


@pytest.fixture(scope="module")
def store(dregistry: Registry) -> DeploymentStore:
    return DeploymentStore(dregistry.database)


@pytest.fixture(scope="module")
def durl(dsettings: Settings, dregistry: Registry) -> Iterator[str]:
    with serve_in_thread(create_app(dsettings, registry=dregistry)) as url:
        yield url


@pytest.fixture
def client(durl: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=durl, timeout=30) as c:
        yield c


def infer(client: httpx.Client, name: str, **headers: Any) -> httpx.Response:
    """One iris inference on ``name``."""
    return client.post(f"/v2/models/{name}/infer", json=ROW, headers=headers)
