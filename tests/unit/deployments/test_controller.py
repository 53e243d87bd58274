"""The controller, one poll at a time: converge, swap and unload, refuse a bad version, delete."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aimass.app import build_server_engine
from aimass.deployments.controller import DeploymentController
from aimass.deployments.spec import DeploymentSpec, Target
from aimass.deployments.store import DeploymentStore
from aimass.registry import Registry
from aimass.settings import Settings
from aimass.testing.models import iris_classifier

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("controller-home"))


@pytest.fixture(scope="module")
def registry(settings: Settings) -> Iterator[Registry]:
    # Shared: registering is the slow part, and each test uses its own deployment.
    opened = Registry.from_settings(settings)
    clf, x = iris_classifier()
    for _ in range(2):
        opened.register(clf, "iris", sample_input=x[:2], task="classification")
    yield opened
    opened.close()


def _to(ref: str) -> DeploymentSpec:
    return DeploymentSpec(targets=(Target(ref=ref, weight=1000),)).checked()


async def test_the_controller_converges_swaps_refuses_and_forgets(
    settings: Settings, registry: Registry
) -> None:
    store = DeploymentStore(registry.database)
    engine, served = build_server_engine(registry, settings)
    router = served.router
    await engine.start()
    controller = DeploymentController(store, registry, engine, router, settings.deployments)

    def loaded() -> set[str]:
        return {f"{s.name}:{s.version}" for s in engine.index()}

    try:
        assert await controller.poll()  # the first poll always reads
        assert controller.status("prod")["revision"] is None
        store.create("prod", _to("iris:1"), by="test")
        assert await controller.poll()
        status = controller.status("prod")
        assert (status["revision"], status["converged"], status["error"]) == (1, True, None)
        assert status["serving"]["targets"] == [
            {"ref": "iris:1", "version": "iris:1", "weight": 100.0}
        ]
        assert loaded() == {"iris:1"}
        assert not await controller.poll()  # nothing moved: nothing read

        store.change("prod", _to("iris:2"), by="test", kind="set")
        assert await controller.poll()
        assert loaded() == {"iris:2"}  # the version nothing uses any more is unloaded

        store.change("prod", _to("nope:1"), by="test", kind="set")
        assert await controller.poll()
        status = controller.status("prod")
        assert (status["revision"], status["converged"]) == (2, False)
        assert "nope" in status["error"]
        table = router.table("prod")
        assert table is not None and table.heaviest.ref == "iris:2"

        store.delete("prod", by="test")
        assert await controller.poll()
        assert router.table("prod") is None
        assert loaded() == set()
    finally:
        await controller.stop()
        await engine.close()


async def test_start_up_models_are_never_unloaded(settings: Settings, registry: Registry) -> None:
    store = DeploymentStore(registry.database)
    store.create("kept", _to("iris:1"), by="test")
    engine, served = build_server_engine(registry, settings)
    router = served.router
    await engine.start(["iris:1"])
    controller = DeploymentController(store, registry, engine, router, settings.deployments)
    try:
        await controller.start()
        store.change("kept", _to("iris:2"), by="test", kind="set")
        assert await controller.poll()
        assert {f"{s.name}:{s.version}" for s in engine.index()} == {"iris:1", "iris:2"}
    finally:
        await controller.stop()
        await engine.close()
