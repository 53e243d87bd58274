"""Shadows and guarded canaries behind a real server.

One server for the module, over a registry holding iris and a few custom
models that behave only on real traffic: the controller warms every version
with zeros (see :mod:`aimass.deployments.warmup`), which they answer well,
so they pass the warm-up and misbehave afterwards, as a bad release would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from aimass import PythonModel
from aimass.app import create_app
from aimass.contract.runtime import Arrays
from aimass.deployments.service import Deployments
from aimass.deployments.spec import Guard
from aimass.deployments.stats import summarize
from aimass.deployments.store import DeploymentStore
from aimass.gateway.audit import AuditLog
from aimass.registry import Registry
from aimass.settings import DeploymentSettings, Settings
from aimass.testing.models import iris_classifier
from aimass.testing.server import serve_in_thread

ROW = {
    "inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]
}
SLOW_S = 0.5
CONCURRENCY = 2
WHO = "tester"


def _real(inputs: Arrays) -> bool:
    """Whether this is real traffic (the warm-up request is all zeros)."""
    return bool(np.any(inputs["input"]))


class Contrary(PythonModel):
    """Says class 2 with uniform probabilities, whatever it is shown."""

    code_paths = (__file__,)

    def predict(self, inputs: Arrays) -> Arrays:
        n = len(inputs["input"])
        return {"label": np.full(n, 2, dtype=np.int64), "probabilities": np.full((n, 3), 1 / 3)}


class Slow(Contrary):
    """Contrary, after SLOW_S seconds on real traffic."""

    def predict(self, inputs: Arrays) -> Arrays:
        if _real(inputs):
            time.sleep(SLOW_S)
        return super().predict(inputs)


class Sluggish(Contrary):
    """Contrary, after 50 ms on real traffic: far past a 1.5x p99 guard over iris."""

    def predict(self, inputs: Arrays) -> Arrays:
        if _real(inputs):
            time.sleep(0.05)
        return super().predict(inputs)


class Broken(Contrary):
    """Raises on real traffic."""

    def predict(self, inputs: Arrays) -> Arrays:
        if _real(inputs):
            raise RuntimeError("this release is broken")
        return super().predict(inputs)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        home=tmp_path_factory.mktemp("shadows-home"),
        deployments=DeploymentSettings(
            poll_interval_s=0.05,
            stats_interval_s=0.1,
            stats_bucket_s=1,
            shadow_concurrency=CONCURRENCY,
        ),
    )


@pytest.fixture(scope="module")
def registry(settings: Settings) -> Iterator[Registry]:
    registry = Registry.from_settings(settings)
    clf, x = iris_classifier()
    registry.register(clf, "iris", sample_input=x[:2], task="classification")
    sample = {"input": np.zeros((1, 4))}  # not real traffic: each answers it well
    for name, model in [
        ("contrary", Contrary()),
        ("slow", Slow()),
        ("sluggish", Sluggish()),
        ("broken", Broken()),
    ]:
        registry.register(model, name, sample_input=sample)
    yield registry
    registry.close()


@pytest.fixture(scope="module")
def store(registry: Registry, settings: Settings) -> DeploymentStore:
    return DeploymentStore(registry.database, bucket_s=settings.deployments.stats_bucket_s)


@pytest.fixture(scope="module")
def service(store: DeploymentStore, registry: Registry) -> Deployments:
    return Deployments(store, registry)


@pytest.fixture(scope="module")
def client(settings: Settings, registry: Registry) -> Iterator[httpx.Client]:
    with (
        serve_in_thread(create_app(settings, registry=registry)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


def wait_until(check: Callable[[], Any], *, within: float = 15.0, what: str = "") -> Any:
    """Poll ``check`` until it gives something true, and return that; fail after ``within`` s."""
    deadline = time.monotonic() + within
    while not (found := check()):
        assert time.monotonic() < deadline, f"not within {within:g}s: {what}"
        time.sleep(0.02)
    return found


def serves(client: httpx.Client, name: str, version: str) -> bool:
    """Whether ``name`` answers from ``version`` now."""
    response = client.post(f"/v2/models/{name}/infer", json=ROW)
    return response.status_code == 200 and response.headers["x-aimass-version"] == version


def shadowed(client: httpx.Client, name: str, shadow: str) -> bool:
    """Whether this server routes ``name`` with ``shadow`` among its shadows (so it may pin it)."""
    response = client.post(f"/v2/models/{name}/infer", json=ROW, headers={"x-aimass-route": shadow})
    return response.status_code == 200 and response.headers["x-aimass-version"] == shadow


def strays(client: httpx.Client, name: str, stable: str) -> bool:
    """Whether a request to ``name`` went elsewhere than ``stable`` (or failed)."""
    response = client.post(f"/v2/models/{name}/infer", json=ROW)
    return response.status_code != 200 or response.headers["x-aimass-version"] != stable


def test_a_shadow_never_changes_the_response_and_its_comparison_appears(
    client: httpx.Client, service: Deployments, store: DeploymentStore
) -> None:
    direct = client.post("/v2/models/iris:1/infer", json=ROW).json()
    service.create("mirrored", "iris:1", by=WHO)
    service.shadow("mirrored", "contrary:1", 1.0, by=WHO)
    wait_until(lambda: shadowed(client, "mirrored", "contrary:1"), what="the shadow was installed")
    started = time.time() - 1
    for _ in range(20):
        response = client.post("/v2/models/mirrored/infer", json=ROW)
        assert response.status_code == 200
        assert response.headers["x-aimass-version"] == "iris:1"
        body = response.json()
        assert body["outputs"] == direct["outputs"]  # the shadow says class 2; nobody hears it
        assert (body["model_name"], body["model_version"]) == ("iris", "1")

    def compared() -> dict[str, Any] | None:
        shadow = summarize(store.read_stats("mirrored", started)).get("contrary:1")
        if shadow is None:
            return None
        # A copy may find the shadow's bound full even here: dropped, not compared.
        comparison = shadow["comparison"]
        return shadow if comparison["compared"] + comparison["dropped"] >= 20 else None

    shadow = wait_until(compared, what="the shadow's comparison was written")
    assert shadow["role"] == "shadow" and shadow["errors"] == 0
    assert shadow["comparison"]["compared"] >= 10
    outputs = shadow["comparison"]["outputs"]
    assert outputs["label"]["agreement"] == 0.0
    assert outputs["label"]["confusion"] == {"0": {"2": shadow["comparison"]["compared"]}}
    assert outputs["probabilities"]["mean_abs_difference"] > 0.1
    assert "mean_difference" in shadow["comparison"]["latency_ms"]


def test_a_slow_shadow_s_copies_are_dropped_and_counted_and_the_live_path_never_waits(
    client: httpx.Client, service: Deployments, store: DeploymentStore
) -> None:
    service.create("behind", "iris:1", by=WHO)
    service.shadow("behind", "slow:1", 1.0, by=WHO)
    wait_until(lambda: shadowed(client, "behind", "slow:1"), what="the shadow was installed")
    started = time.time() - 1
    began = time.monotonic()
    for _ in range(20):
        assert client.post("/v2/models/behind/infer", json=ROW).status_code == 200
    # Had the live path waited for the shadow, 20 answers would take 20 x SLOW_S.
    assert time.monotonic() - began < 10 * SLOW_S

    def counted() -> dict[str, Any] | None:
        shadow = summarize(store.read_stats("behind", started)).get("slow:1")
        if shadow is None:
            return None
        comparison = shadow["comparison"]
        return shadow if comparison["dropped"] + comparison["compared"] >= 20 else None

    shadow = wait_until(counted, what="every copy answered or dropped")
    assert shadow["comparison"]["dropped"] >= 20 - 2 * CONCURRENCY
    assert shadow["requests"] == shadow["comparison"]["compared"]
    assert shadow["p50_ms"] >= SLOW_S * 1000 * 0.8


def tripped(service: Deployments, name: str) -> Callable[[], Any]:
    def check() -> Any:
        events = [e for e in service.history(name) if e.kind == "guard"]
        return events[0] if events else None

    return check


def drive_until_tripped(client: httpx.Client, service: Deployments, name: str) -> Any:
    """Send requests to ``name`` until the guard trips its canary; the guard's event."""
    deadline = time.monotonic() + 30
    check = tripped(service, name)
    while (event := check()) is None:
        assert time.monotonic() < deadline, "the guard did not trip within 30 s"
        for _ in range(5):
            client.post(f"/v2/models/{name}/infer", json=ROW)
    return event


@pytest.mark.parametrize(
    ("canary", "guard", "why"),
    [
        ("broken:1", Guard(max_error_rate=0.1, min_requests=10), "failed"),
        ("sluggish:1", Guard(max_p99_ratio=1.5, min_requests=10), "p99"),
    ],
    ids=["errors", "latency"],
)
def test_a_bad_canary_is_rolled_back_by_its_guard(
    client: httpx.Client, service: Deployments, canary: str, guard: Guard, why: str
) -> None:
    name = f"guarded-{canary.split(':')[0]}"
    service.create(name, "iris:1", by=WHO)
    service.canary(name, canary, 500, guard, by=WHO)
    wait_until(lambda: strays(client, name, "iris:1"), what="the canary took traffic")
    event = drive_until_tripped(client, service, name)
    assert why in event.reason and event.by == "guard"
    deployment = service.get(name)
    assert deployment.spec.canary is None and deployment.spec.weight_of("iris:1") == 1000
    # The stable version takes every request again, within the controller's poll.
    wait_until(
        lambda: all(serves(client, name, "iris:1") for _ in range(20)),
        what="only the stable version answers",
    )
    audit = AuditLog(service.store.engine).list()
    assert any(name in str(entry.public()) and "guard" in str(entry.public()) for entry in audit)
