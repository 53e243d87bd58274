from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from aimass.contract.request import InferRequest
from aimass.contract.runtime import Capability
from aimass.errors import AimassError, ErrorCode
from aimass.serving.backend import ThreadBackend
from aimass.serving.cache import ModelCache, ModelStatus
from aimass.serving.scheduler import batching_schedulers
from aimass.settings import ServingSettings
from tests.unit.serving.serving_doubles import WAIT, Script, SpyRegistry

pytestmark = pytest.mark.anyio


@pytest.fixture
def backend(registry: SpyRegistry) -> Iterator[ThreadBackend]:
    threads = ThreadBackend(registry.load, threads=2, load_threads=2)
    yield threads
    threads.close()


def make_cache(backend: ThreadBackend, *, budget: int | None = None) -> ModelCache:
    schedulers = batching_schedulers(ServingSettings(max_delay_ms=0), backend)
    return ModelCache(
        backend.load,
        schedulers.for_model,
        backend.release,
        budget_bytes=budget,
        retry_after=3600,
    )


X = {"x": np.ones((1, 2))}


async def test_concurrent_first_uses_share_one_load(
    registry: SpyRegistry, backend: ThreadBackend
) -> None:
    info = registry.add_scripted("m")
    cache = make_cache(backend)
    entries = await asyncio.gather(*(cache.acquire(info) for _ in range(10)))
    assert registry.loads == {"m": 1}
    assert len({id(e) for e in entries}) == 1
    assert entries[0].users == 10
    for entry in entries:
        cache.release(entry)
    [state] = cache.index()
    assert (state.name, state.version, state.status, state.memory_bytes) == (
        "m",
        1,
        ModelStatus.READY,
        1000,
    )
    await cache.close()


async def test_least_recently_used_idle_models_are_evicted(
    registry: SpyRegistry, backend: ThreadBackend
) -> None:
    infos = {name: registry.add_scripted(name, size=400) for name in "abc"}
    cache = make_cache(backend, budget=1000)
    for name in "ab":
        cache.release(await cache.acquire(infos[name]))
    cache.release(await cache.acquire(infos["a"]))  # now b is the least recently used
    cache.release(await cache.acquire(infos["c"]))
    assert [(s.name, s.status) for s in cache.index()] == [
        ("a", ModelStatus.READY),
        ("c", ModelStatus.READY),
    ]
    assert cache.used_bytes == 800
    await cache.close()


async def test_a_model_in_use_is_not_evicted_until_released(
    registry: SpyRegistry, backend: ThreadBackend
) -> None:
    a = registry.add_scripted("a", size=600)
    b = registry.add_scripted("b", size=600)
    cache = make_cache(backend, budget=1000)
    held = await cache.acquire(a)
    other = await cache.acquire(b)
    # Both in use: the cache goes over budget rather than evict a model mid-request.
    assert {s.name for s in cache.index()} == {"a", "b"}
    assert cache.used_bytes == 1200
    cache.release(other)
    # Over budget, b is now the only idle model: it goes, a (in flight) stays.
    assert [s.name for s in cache.index()] == ["a"]
    cache.release(held)
    assert [s.name for s in cache.index()] == ["a"]
    assert cache.used_bytes == 600
    await cache.close()


async def test_a_failed_load_is_unavailable_and_leaves_others_alone(
    registry: SpyRegistry, backend: ThreadBackend
) -> None:
    good = registry.add_scripted("good")
    bad = registry.add_scripted("bad", Script(load_error=OSError("disk on fire at /secret")))
    cache = make_cache(backend)
    results = await asyncio.gather(cache.acquire(bad), cache.acquire(good), return_exceptions=True)
    assert isinstance(results[0], AimassError)
    assert results[0].code is ErrorCode.INTERNAL
    assert "/secret" not in results[0].message
    states = {s.name: s for s in cache.index()}
    assert states["good"].status is ModelStatus.READY
    assert states["bad"].status is ModelStatus.UNAVAILABLE
    assert "failed to load" in states["bad"].reason
    # Within retry_after the failure is reported without loading again.
    with pytest.raises(AimassError):
        await cache.acquire(bad)
    assert registry.loads["bad"] == 1
    # An explicit load retries.
    registry.scripts["bad"].load_error = None
    await cache.load(bad)
    assert cache.is_ready("bad", 1)
    assert registry.loads["bad"] == 2
    await cache.close()


async def test_a_load_error_code_passes_through(
    registry: SpyRegistry, backend: ThreadBackend
) -> None:
    info = registry.add_scripted(
        "m", Script(load_error=AimassError(ErrorCode.MISSING_EXTRA, "pip install it"))
    )
    cache = make_cache(backend)
    with pytest.raises(AimassError) as caught:
        await cache.acquire(info)
    assert caught.value.code is ErrorCode.MISSING_EXTRA
    assert cache.index()[0].reason == "pip install it"
    await cache.close()


async def test_unload_waits_for_queued_requests(
    registry: SpyRegistry, backend: ThreadBackend
) -> None:
    gate = threading.Event()
    info = registry.add_scripted("m", Script(gate=gate))
    cache = make_cache(backend)
    entry = await cache.acquire(info)
    batcher = entry.schedulers[Capability.PREDICT]
    request = asyncio.ensure_future(batcher.submit(InferRequest("m", X)))
    assert await asyncio.to_thread(registry.scripts["m"].entered.wait, WAIT)
    unloading = asyncio.ensure_future(cache.unload("m"))
    await asyncio.sleep(0)
    assert cache.index() == []
    assert not unloading.done()
    gate.set()
    np.testing.assert_array_equal((await request)["output"], X["x"] * 2)
    cache.release(entry)
    assert await unloading == 1
    await cache.close()


async def test_loaded_models_are_kept_out_of_collections_until_dropped(
    registry: SpyRegistry, backend: ThreadBackend
) -> None:
    info = registry.add_scripted("m")
    cache = make_cache(backend)
    gc.unfreeze()
    entry = await cache.acquire(info)
    # The model's objects (and everything else alive) left the collector's generations.
    assert gc.get_freeze_count() > 0
    cache.release(entry)
    assert await cache.unload("m") == 1
    # Back in view, so cycles among a dropped model's objects can still be freed.
    assert gc.get_freeze_count() == 0
