"""Deployments over real HTTP: weights, sticky keys, pins, hot swaps, restarts, failed loads.

One server for the module, over a SQLite registry of four iris versions (the
same model: ``x-aimass-version`` tells them apart). Changes are written to the
store as the CLI and the API write them; the server's controller, polling
every 50 ms here, converges on them.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx
import pytest
from sklearn.linear_model import LogisticRegression

from aimass.app import create_app
from aimass.deployments.store import DeploymentStore
from aimass.gateway.keys import KeyStore
from aimass.registry import Registry
from aimass.roles import Role
from aimass.settings import Settings
from aimass.testing.models import iris_classifier
from aimass.testing.server import serve_in_thread
from tests.integration.deployments.conftest import answered, infer, register_iris, spec, wait_until


def _create(store: DeploymentStore, name: str, *targets: tuple[str, float], **kw: str) -> None:
    store.create(name, spec(*targets, **kw), by="test")


def _set(store: DeploymentStore, name: str, *targets: tuple[str, float], **kw: str) -> None:
    store.change(name, spec(*targets, **kw), by="test", kind="set")


def _serves(client: httpx.Client, name: str, version: str) -> bool:
    response = infer(client, name)
    return response.status_code == 200 and answered(response) == version


def test_a_deployment_is_called_like_a_model_and_names_its_version(
    client: httpx.Client, store: DeploymentStore
) -> None:
    _create(store, "plain", ("iris:2", 100))
    wait_until(lambda: _serves(client, "plain", "iris:2"), what="plain serves iris:2")
    meta = client.get("/v2/models/plain")
    assert meta.status_code == 200 and meta.json()["name"] == "iris"
    assert client.get("/v2/models/plain/ready").json() == {"name": "plain", "ready": True}
    # A version of the deployment's name is not one of its versions.
    assert client.post("/v2/models/plain/versions/2/infer", json={}).status_code == 404


def test_weights_are_observed_within_binomial_tolerance(
    client: httpx.Client, store: DeploymentStore
) -> None:
    _create(store, "split", ("iris:1", 70), ("iris:2", 30))
    wait_until(lambda: infer(client, "split").status_code == 200, what="split served")
    requests = 600
    counted = Counter(answered(infer(client, "split")) for _ in range(requests))
    assert set(counted) == {"iris:1", "iris:2"}
    sigma = (0.3 * 0.7 / requests) ** 0.5
    assert abs(counted["iris:2"] / requests - 0.3) < 4 * sigma, counted


def test_a_sticky_key_holds_and_moving_w_remaps_about_w(
    client: httpx.Client, store: DeploymentStore
) -> None:
    sticky = "header:x-user-id"
    _create(store, "sticky", ("iris:1", 90), ("iris:2", 10), sticky=sticky)
    wait_until(lambda: infer(client, "sticky").status_code == 200, what="sticky served")
    users = [f"user-{i}" for i in range(300)]

    def where() -> dict[str, str]:
        return {u: answered(infer(client, "sticky", **{"x-user-id": u})) for u in users}

    before = where()
    again = {u: answered(infer(client, "sticky", **{"x-user-id": u})) for u in users[:50]}
    assert again == {u: before[u] for u in users[:50]}  # it holds
    _set(store, "sticky", ("iris:1", 80), ("iris:2", 20), sticky=sticky)
    probe = "user-0"
    # Converged once iris:2's share has grown; the map is read after that.
    wait_until(lambda: sum(v == "iris:2" for v in where().values()) > 40, what="weights moved")
    after = where()
    moved = [u for u in users if before[u] != after[u]]
    assert all(after[u] == "iris:2" for u in moved), "keys only move to the target that grew"
    assert 0.04 < len(moved) / len(users) < 0.18, len(moved)
    assert after[probe] == where()[probe]


def test_a_deployer_may_pin_a_version_with_the_route_header(
    client: httpx.Client, store: DeploymentStore
) -> None:
    store.create("pinned", spec(("iris:1", 100)).with_shadow("iris:3", 0.5), by="test")
    wait_until(lambda: _serves(client, "pinned", "iris:1"), what="pinned served")
    # The gateway is off: every caller may pin, a shadow version included.
    for version in ("iris:3", "iris:1"):
        assert answered(infer(client, "pinned", **{"x-aimass-route": version})) == version
    outside = infer(client, "pinned", **{"x-aimass-route": "iris:4"})
    assert outside.status_code == 400
    assert "iris:1" in outside.json()["error"]


def test_the_pin_header_is_refused_to_an_invoker(tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = Settings(home=tmp_path_factory.mktemp("pin-home"))
    registry = Registry.from_settings(settings)
    try:
        register_iris(registry, versions=2)
        DeploymentStore(registry.database).create("guarded", spec(("iris:1", 100)), by="test")
        keys = KeyStore(registry.database)
        invoker = keys.create(name="inv", role=Role.INVOKER, created_by="test").secret
        deployer = keys.create(name="dep", role=Role.DEPLOYER, created_by="test").secret
        with (
            serve_in_thread(create_app(settings, registry=registry)) as url,
            httpx.Client(base_url=url, timeout=30) as client,
        ):
            pin = {"x-aimass-route": "iris:1"}
            denied = infer(client, "guarded", authorization=f"Bearer {invoker}", **pin)
            assert denied.status_code == 403
            assert "deployer" in denied.json()["error"]
            plain = infer(client, "guarded", authorization=f"Bearer {invoker}")
            assert answered(plain) == "iris:1"
            allowed = infer(client, "guarded", authorization=f"Bearer {deployer}", **pin)
            assert answered(allowed) == "iris:1"
    finally:
        registry.close()


def test_ten_swaps_under_concurrent_load_fail_nothing(
    client: httpx.Client, durl: str, store: DeploymentStore
) -> None:
    _create(store, "swapped", ("iris:1", 100))
    wait_until(lambda: _serves(client, "swapped", "iris:1"), what="swapped served")
    deployed = {"iris:1", "iris:2", "iris:3"}
    stop = threading.Event()
    answers: list[tuple[int, str]] = []

    def load() -> None:
        with httpx.Client(base_url=durl, timeout=30) as own:
            while not stop.is_set():
                response = infer(own, "swapped")
                version = response.headers.get("x-aimass-version", "")
                answers.append((response.status_code, version))

    with ThreadPoolExecutor(6) as pool:
        loaders = [pool.submit(load) for _ in range(6)]
        for swap in range(10):
            target = ["iris:2", "iris:3", "iris:1"][swap % 3]
            _set(store, "swapped", (target, 100))
            wait_until(partial(_serves, client, "swapped", target), what=f"swap to {target}")
        stop.set()
        for loader in loaders:
            loader.result()
    assert len(answers) > 100
    failures = Counter(status for status, _ in answers if status != 200)
    assert not failures, failures
    assert {version for _, version in answers} <= deployed


def test_a_version_that_fails_to_load_leaves_the_deployment_as_it_was(
    client: httpx.Client,
    home: Path,
    dregistry: Registry,
    store: DeploymentStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _create(store, "safe", ("iris:1", 100))
    wait_until(lambda: _serves(client, "safe", "iris:1"), what="safe served")
    objects = home / "artifacts" / "objects"
    present = {p for p in objects.rglob("*") if p.is_file()}
    _, x = iris_classifier()
    other = LogisticRegression(C=0.01, max_iter=200).fit(x, [0, 1, 2] * (len(x) // 3))
    broken = dregistry.register(other, "broken", sample_input=x[:2], task="classification")
    for stored in {p for p in objects.rglob("*") if p.is_file()} - present:
        stored.write_bytes(b"not what was registered")
    with caplog.at_level(logging.WARNING, logger="aimass.deployments.controller"):
        _set(store, "safe", (broken.ref, 100))
        wait_until(lambda: "deployment safe stays as it was" in caplog.text, what="refused")
    assert "corrupted" in caplog.text
    # It still serves the version it had, and only that.
    answers = Counter(answered(infer(client, "safe")) for _ in range(50))
    assert answers == {"iris:1": 50}


def test_deployments_survive_a_restart(dsettings: Settings, store: DeploymentStore) -> None:
    _create(store, "durable", ("iris:3", 100))
    registry = Registry.from_settings(dsettings)
    try:
        with (
            serve_in_thread(create_app(dsettings, registry=registry)) as url,
            httpx.Client(base_url=url, timeout=30) as fresh,
        ):
            # The first request, with no wait: the server converged before it said ready.
            assert answered(infer(fresh, "durable")) == "iris:3"
    finally:
        registry.close()
