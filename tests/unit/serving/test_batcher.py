from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import numpy as np
import pytest

from aimass.contract.request import InferRequest
from aimass.contract.runtime import Arrays
from aimass.errors import AimassError, ErrorCode
from aimass.serving.backend import ThreadBackend
from aimass.serving.batcher import Batcher
from tests.unit.serving.serving_doubles import function_model, no_loads

pytestmark = pytest.mark.anyio

WAIT = 10.0


@pytest.fixture
def backend() -> Iterator[ThreadBackend]:
    threads = ThreadBackend(no_loads, threads=2, load_threads=1)
    yield threads
    threads.close()


def batcher_of(backend: ThreadBackend, fn: Callable[[Arrays], Arrays], **limits: Any) -> Batcher:
    """A batcher serving ``fn`` on the thread backend."""
    return Batcher(function_model(fn), backend, **limits)


def submit(batcher: Batcher, inputs: Arrays, timeout: float | None = None) -> Awaitable[Arrays]:
    """Submit a request of ``inputs`` due in ``timeout`` seconds (none: no deadline)."""
    request = InferRequest("fn", inputs)
    if timeout is not None:
        request.deadline = asyncio.get_running_loop().time() + timeout
    return batcher.submit(request)


class Model:
    """Doubles ``x``; records rows per call; can be held at a gate."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[int] = []
        self.gate = gate
        self.entered = threading.Event()

    def __call__(self, inputs: Arrays) -> Arrays:
        self.calls.append(len(inputs["x"]))
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT)
        return {"y": inputs["x"] * 2, "n": inputs["x"].sum(axis=tuple(range(1, inputs["x"].ndim)))}


def rows(n: int, start: float = 0.0, width: int = 3) -> Arrays:
    return {"x": np.arange(start, start + n * width, dtype=np.float64).reshape(n, width)}


async def wait_entered(model: Model) -> None:
    assert await asyncio.to_thread(model.entered.wait, WAIT)


async def test_concurrent_requests_share_calls_and_get_their_own_rows(
    backend: ThreadBackend,
) -> None:
    model = Model()
    batcher = batcher_of(backend, model, max_batch_size=32, max_delay=0.05)
    requests = [rows(1 + i % 4, start=100 * i) for i in range(40)]
    results = await asyncio.gather(*(submit(batcher, r) for r in requests))
    assert len(model.calls) < len(requests)
    assert max(model.calls) <= 32
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["y"], request["x"] * 2)
        np.testing.assert_array_equal(result["n"], request["x"].sum(axis=1))
    await batcher.close()


async def test_full_queue_is_overloaded_at_once(backend: ThreadBackend) -> None:
    gate = threading.Event()
    model = Model(gate)
    batcher = batcher_of(backend, model, max_batch_size=1, max_delay=0, queue_size=2)
    running = asyncio.ensure_future(submit(batcher, rows(1)))
    await wait_entered(model)
    queued = [asyncio.ensure_future(submit(batcher, rows(1))) for _ in range(2)]
    await asyncio.sleep(0)  # let them enqueue
    with pytest.raises(AimassError) as caught:
        await submit(batcher, rows(1))
    assert caught.value.code is ErrorCode.OVERLOADED
    gate.set()
    await asyncio.gather(running, *queued)
    await batcher.close()


async def test_incompatible_shapes_run_in_separate_batches(backend: ThreadBackend) -> None:
    model = Model()
    batcher = batcher_of(backend, model, max_batch_size=64, max_delay=0.05)
    requests = [rows(2, start=i, width=2 + i % 3) for i in range(12)]
    results = await asyncio.gather(*(submit(batcher, r) for r in requests))
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["y"], request["x"] * 2)
    assert len(model.calls) >= 3  # one per width at least
    await batcher.close()


async def test_a_request_larger_than_the_batch_runs_alone(backend: ThreadBackend) -> None:
    model = Model()
    batcher = batcher_of(backend, model, max_batch_size=4, max_delay=0.01)
    small, big = rows(2), rows(10)
    out_small, out_big = await asyncio.gather(submit(batcher, small), submit(batcher, big))
    np.testing.assert_array_equal(out_big["y"], big["x"] * 2)
    np.testing.assert_array_equal(out_small["y"], small["x"] * 2)
    assert sorted(model.calls) == [2, 10]
    await batcher.close()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (AimassError(ErrorCode.INVALID_INPUT, "nope"), ErrorCode.INVALID_INPUT),
        (ValueError("secret internals"), ErrorCode.INTERNAL),
    ],
)
async def test_a_model_error_reaches_every_request_in_the_batch(
    backend: ThreadBackend, error: Exception, code: ErrorCode, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(inputs: Arrays) -> Arrays:
        raise error

    batcher = batcher_of(backend, broken, max_delay=0.01)
    results = await asyncio.gather(
        *(submit(batcher, rows(1)) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, AimassError) and r.code is code for r in results)
    assert len({id(r) for r in results}) == 5
    if code is ErrorCode.INTERNAL:
        assert all("secret" not in str(r) for r in results)
        assert "secret internals" in caplog.text
    await batcher.close()


async def test_a_wrong_row_count_is_internal(backend: ThreadBackend) -> None:
    batcher = batcher_of(backend, lambda inputs: {"y": inputs["x"][:1]}, max_delay=0.01)
    results = await asyncio.gather(submit(batcher, rows(2)), return_exceptions=True)
    assert isinstance(results[0], AimassError)
    assert results[0].code is ErrorCode.INTERNAL
    assert "1 rows for 2 inputs" in results[0].message
    await batcher.close()


async def test_the_delay_is_measured_on_the_injected_clock(backend: ThreadBackend) -> None:
    times = iter([0.0])

    def clock() -> float:
        # The request arrives at 0; by the time the worker looks it is an hour later.
        return next(times, 3600.0)

    model = Model()
    batcher = batcher_of(backend, model, max_delay=600.0, clock=clock)
    # Two at once: under load the batcher would wait for company, but not past the delay.
    results = await asyncio.wait_for(
        asyncio.gather(submit(batcher, rows(1)), submit(batcher, rows(1, start=5))), WAIT
    )
    np.testing.assert_array_equal(results[1]["y"], rows(1, start=5)["x"] * 2)
    await batcher.close()


async def test_a_lone_request_on_an_idle_model_does_not_wait_for_the_delay(
    backend: ThreadBackend,
) -> None:
    model = Model()
    batcher = batcher_of(backend, model, max_delay=600.0)
    for start in range(3):
        result = await asyncio.wait_for(submit(batcher, rows(1, start=start)), WAIT)
        np.testing.assert_array_equal(result["y"], rows(1, start=start)["x"] * 2)
    assert model.calls == [1, 1, 1]
    await batcher.close()


async def test_a_full_batch_does_not_wait_for_the_delay(backend: ThreadBackend) -> None:
    model = Model()
    batcher = batcher_of(backend, model, max_batch_size=4, max_delay=600.0)
    results = await asyncio.wait_for(
        asyncio.gather(*(submit(batcher, rows(1, start=i)) for i in range(4))), WAIT
    )
    assert model.calls == [4]
    assert [float(r["y"][0, 0]) for r in results] == [0.0, 2.0, 4.0, 6.0]
    await batcher.close()


async def test_close_drains_queued_requests_and_refuses_new_ones(backend: ThreadBackend) -> None:
    gate = threading.Event()
    model = Model(gate)
    batcher = batcher_of(backend, model, max_batch_size=2, max_delay=0)
    pending = [asyncio.ensure_future(submit(batcher, rows(1, start=i))) for i in range(6)]
    await wait_entered(model)
    closing = asyncio.ensure_future(batcher.close())
    await asyncio.sleep(0)
    with pytest.raises(AimassError) as caught:
        await submit(batcher, rows(1))
    assert caught.value.code is ErrorCode.NOT_READY
    assert not closing.done()
    gate.set()
    results = await asyncio.gather(*pending)
    await closing
    assert [float(r["y"][0, 0]) for r in results] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]


async def test_cancelled_requests_are_skipped(backend: ThreadBackend) -> None:
    gate = threading.Event()
    model = Model(gate)
    batcher = batcher_of(backend, model, max_batch_size=1, max_delay=0)
    first = asyncio.ensure_future(submit(batcher, rows(1)))
    await wait_entered(model)
    abandoned = asyncio.ensure_future(submit(batcher, rows(1)))
    kept = asyncio.ensure_future(submit(batcher, rows(1, start=5)))
    await asyncio.sleep(0)
    abandoned.cancel()
    gate.set()
    await first
    result: Any = await kept
    assert float(result["y"][0, 0]) == 10.0
    assert model.calls == [1, 1]
    await batcher.close()


async def test_deadlines_expire_queued_and_running_requests_each_on_time(
    backend: ThreadBackend,
) -> None:
    gate = threading.Event()
    model = Model(gate)
    batcher = batcher_of(backend, model, max_batch_size=1, max_delay=0)
    running = asyncio.ensure_future(submit(batcher, rows(1), timeout=0.3))
    await wait_entered(model)
    # Queued behind the held call: a later deadline first, then an earlier one,
    # which must re-arm the one shared timer sooner.
    late = asyncio.ensure_future(submit(batcher, rows(1), timeout=WAIT))
    early = asyncio.ensure_future(submit(batcher, rows(1), timeout=0.05))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(AimassError) as caught:
        await early
    assert caught.value.code is ErrorCode.TIMEOUT
    assert loop.time() - started < 0.25  # not held back to the running request's deadline
    with pytest.raises(AimassError) as caught:
        await running
    assert caught.value.code is ErrorCode.TIMEOUT  # the model still holds it
    assert not late.done()
    gate.set()
    np.testing.assert_array_equal((await late)["y"], rows(1)["x"] * 2)
    await batcher.close()


@pytest.mark.parametrize(
    ("fill_fraction", "calls"),
    [(1.0, [2, 2]), (0.0, [2, 1, 1])],
    ids=["fills-the-batch", "runs-alone-without-a-fill-wait"],
)
async def test_a_free_model_waits_a_fraction_of_its_last_call_for_a_fuller_batch(
    backend: ThreadBackend, fill_fraction: float, calls: list[int]
) -> None:
    gate = threading.Event()
    model = Model(gate)
    batcher = batcher_of(
        backend, model, max_batch_size=4, max_delay=0.001, fill_fraction=fill_fraction
    )
    first = [asyncio.ensure_future(submit(batcher, rows(1))) for _ in range(2)]
    await wait_entered(model)
    # Queued while the call runs: the moment it ends this one alone would be
    # worth running, but the clients just answered are about to come back.
    during = asyncio.ensure_future(submit(batcher, rows(1)))
    await asyncio.sleep(0.2)
    gate.set()
    await asyncio.gather(*first)
    after = asyncio.ensure_future(submit(batcher, rows(1)))  # a client coming back
    await asyncio.gather(during, after)
    assert model.calls == calls
    await batcher.close()
