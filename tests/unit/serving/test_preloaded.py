"""Models loaded before the engine existed (before a fork) are served, never loaded again."""

from __future__ import annotations

import numpy as np
import pytest

from aimass.serving import ModelStatus, build_engine
from aimass.settings import ServingSettings
from tests.unit.serving.serving_doubles import SpyRegistry, ask

pytestmark = pytest.mark.anyio


async def test_a_preloaded_model_is_ready_and_serves_without_a_load(
    registry: SpyRegistry,
) -> None:
    info = registry.add_scripted("m", size=300)
    model = registry.load("m", 1)
    engine = build_engine(registry, ServingSettings(max_delay_ms=0), preloaded=[(info, model)])
    [state] = engine.index()
    assert (state.name, state.version, state.status, state.memory_bytes) == (
        "m",
        1,
        ModelStatus.READY,
        300,
    )
    await engine.start(["m"])  # a start-up reference to it finds it loaded
    result = await ask(engine, "m", None, {"x": np.ones((1, 2))})
    np.testing.assert_array_equal(result.outputs["output"], [[2.0, 2.0]])
    assert registry.loads == {"m": 1}  # only the load the test did itself
    await engine.close()


def test_a_version_cannot_be_preloaded_twice(registry: SpyRegistry) -> None:
    info = registry.add_scripted("m")
    model = registry.load("m", 1)
    with pytest.raises(ValueError, match="already in the cache"):
        build_engine(registry, ServingSettings(), preloaded=[(info, model), (info, model)])
