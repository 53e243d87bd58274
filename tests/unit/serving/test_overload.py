"""Overload and slow models: queues that free themselves, abandoned calls, per-model threads."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from aimass.contract.runtime import Arrays
from aimass.errors import AimassError, ErrorCode
from aimass.serving import Engine, build_engine
from aimass.serving.batcher import STALLED_AFTER, STALLED_FOR
from aimass.settings import ServingSettings
from tests.unit.serving.serving_doubles import WAIT, Script, SpyRegistry, ask, double

pytestmark = pytest.mark.anyio

X = {"x": np.ones((1, 2))}


@pytest.fixture
async def make_engine(registry: SpyRegistry) -> AsyncIterator[Callable[..., Engine]]:
    engines: list[Engine] = []
    released = threading.Event()

    def make(**settings: Any) -> Engine:
        engine = build_engine(registry, ServingSettings(**settings))
        engines.append(engine)
        return engine

    yield make
    released.set()
    for script in registry.scripts.values():
        if script.gate is not None:
            script.gate.set()
    for engine in engines:
        await engine.close()


async def _code(call: Any) -> ErrorCode:
    with pytest.raises(AimassError) as caught:
        await call
    return caught.value.code


def _first_call_hangs(release: threading.Event) -> Callable[[Arrays], Arrays]:
    calls = []

    def fn(inputs: Arrays) -> Arrays:
        calls.append(1)
        if len(calls) == 1:
            release.wait(WAIT)
        return double(inputs)

    return fn


async def test_timed_out_requests_leave_the_queue_at_once(
    registry: SpyRegistry, make_engine: Callable[..., Engine]
) -> None:
    script = Script(gate=threading.Event())
    registry.add_scripted("slow", script)
    engine = make_engine(max_batch_size=1, max_delay_ms=0, queue_size=2)
    await engine.start(["slow"])
    running = asyncio.ensure_future(ask(engine, "slow", None, X))
    assert await asyncio.to_thread(script.entered.wait, WAIT)
    late = [ask(engine, "slow", None, X, timeout=0.05) for _ in range(2)]
    assert await asyncio.gather(*(_code(call) for call in late)) == [ErrorCode.TIMEOUT] * 2
    # Nobody is waiting: the queue has room again while the slow call still runs.
    waiting = asyncio.ensure_future(ask(engine, "slow", None, X))
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(ask(engine, "slow", None, X))
    await asyncio.sleep(0)
    gone.cancel()  # its client went away
    await asyncio.sleep(0)
    another = asyncio.ensure_future(ask(engine, "slow", None, X))
    await asyncio.sleep(0)
    assert not another.done(), "a queue of two refused its second live request"
    assert script.gate is not None
    script.gate.set()
    await asyncio.gather(running, waiting, another)
    # One call each for the live requests; the timed-out and cancelled ones never ran.
    assert registry.calls["slow"] == [1, 1, 1]


async def test_a_call_past_every_deadline_is_abandoned_and_counted(
    registry: SpyRegistry, make_engine: Callable[..., Engine]
) -> None:
    release = threading.Event()
    registry.add_scripted("hangs", Script(fn=_first_call_hangs(release)))
    engine = make_engine(max_delay_ms=0, executor_threads=2)
    await engine.start(["hangs"])
    try:
        assert await _code(ask(engine, "hangs", None, X, timeout=0.05)) is ErrorCode.TIMEOUT
        # The next request does not wait for the abandoned call.
        started = time.monotonic()
        answer = await ask(engine, "hangs", None, X, timeout=WAIT / 2)
        assert time.monotonic() - started < WAIT / 4
        np.testing.assert_array_equal(answer.outputs["output"], X["x"] * 2)
        [state] = engine.index()
        assert (state.overruns, state.stalled) == (1, False)
        assert await engine.is_ready("hangs")
    finally:
        release.set()


async def test_a_model_whose_calls_all_overran_is_not_ready_until_one_answers(
    registry: SpyRegistry, make_engine: Callable[..., Engine]
) -> None:
    gate = threading.Event()
    registry.add_scripted("hung", Script(gate=gate))
    engine = make_engine(max_delay_ms=0, executor_threads=STALLED_AFTER)
    await engine.start(["hung"])
    for _ in range(STALLED_AFTER):
        assert await _code(ask(engine, "hung", None, X, timeout=0.05)) is ErrorCode.TIMEOUT
    [state] = engine.index()
    assert (state.overruns, state.stalled) == (STALLED_AFTER, True)
    assert not await engine.is_ready("hung")
    assert not await engine.serves_startup_models()
    gate.set()
    await ask(engine, "hung", None, X)
    assert await engine.is_ready("hung")
    assert await engine.serves_startup_models()


async def test_a_stalled_model_shows_ready_again_after_a_while_without_overruns(
    registry: SpyRegistry,
) -> None:
    gate = threading.Event()
    registry.add_scripted("hung", Script(gate=gate))
    now = [0.0]
    engine = build_engine(
        registry,
        ServingSettings(max_delay_ms=0, executor_threads=STALLED_AFTER),
        clock=lambda: now[0],
    )
    try:
        await engine.start(["hung"])
        for _ in range(STALLED_AFTER):
            assert await _code(ask(engine, "hung", None, X, timeout=0.05)) is ErrorCode.TIMEOUT
        assert not await engine.is_ready("hung")
        now[0] += STALLED_FOR
        # Still hung, but a balancer that stopped sending it traffic may try it again.
        assert await engine.is_ready("hung")
    finally:
        gate.set()
        await engine.close()


async def test_slow_models_do_not_starve_the_others(
    registry: SpyRegistry, make_engine: Callable[..., Engine]
) -> None:
    gates = {name: threading.Event() for name in ("slow-a", "slow-b")}
    scripts = {name: Script(gate=gate) for name, gate in gates.items()}
    for name, script in scripts.items():
        registry.add_scripted(name, script)
    registry.add_scripted("fast")
    engine = make_engine(max_delay_ms=0, executor_threads=2)
    await engine.start([*gates, "fast"])
    busy = [
        asyncio.ensure_future(ask(engine, name, None, X, timeout=WAIT))
        for name in gates
        for _ in range(4)
    ]
    for script in scripts.values():
        assert await asyncio.to_thread(script.entered.wait, WAIT)
    started = time.monotonic()
    answer = await ask(engine, "fast", None, X, timeout=WAIT / 2)
    assert time.monotonic() - started < 1.0
    np.testing.assert_array_equal(answer.outputs["output"], X["x"] * 2)
    for gate in gates.values():
        gate.set()
    await asyncio.gather(*busy)


async def test_server_readiness_needs_its_startup_models(
    registry: SpyRegistry, make_engine: Callable[..., Engine]
) -> None:
    registry.add_scripted("broken", Script(load_error=RuntimeError("no weights")))
    registry.add_scripted("fine")
    engine = make_engine(load_retry_s=3600)
    await engine.start(["fine", "broken"], allow_missing=True)
    assert engine.ready
    assert not await engine.serves_startup_models()
    alone = make_engine()
    await alone.start(["fine"])
    assert await alone.serves_startup_models()
    missing = make_engine()
    await missing.start(["nope"], allow_missing=True)
    assert not await missing.serves_startup_models()


async def test_a_burst_beyond_the_queue_joins_the_next_call_instead_of_being_refused(
    registry: SpyRegistry, make_engine: Callable[..., Engine]
) -> None:
    script = Script(gate=threading.Event())
    registry.add_scripted("slow", script)
    engine = make_engine(max_batch_size=8, max_delay_ms=0, queue_size=2, admission_wait_ms=5000)
    await engine.start(["slow"])
    running = asyncio.ensure_future(ask(engine, "slow", None, X))
    assert await asyncio.to_thread(script.entered.wait, WAIT)
    # Eight requests in one event-loop turn against two queue slots: the next call takes them all.
    burst = [asyncio.ensure_future(ask(engine, "slow", None, X)) for _ in range(8)]
    await asyncio.sleep(0.05)
    assert not any(call.done() for call in burst), "requests refused while the call ran"
    assert script.gate is not None
    script.gate.set()
    await asyncio.gather(running, *burst)
    assert registry.calls["slow"] == [1, 8]


async def test_a_request_waiting_for_a_slot_is_refused_after_the_admission_wait(
    registry: SpyRegistry, make_engine: Callable[..., Engine]
) -> None:
    script = Script(gate=threading.Event())
    registry.add_scripted("slow", script)
    engine = make_engine(max_batch_size=1, max_delay_ms=0, queue_size=1, admission_wait_ms=50)
    await engine.start(["slow"])
    running = asyncio.ensure_future(ask(engine, "slow", None, X))
    assert await asyncio.to_thread(script.entered.wait, WAIT)
    queued = asyncio.ensure_future(ask(engine, "slow", None, X))
    await asyncio.sleep(0)
    started = time.monotonic()
    assert await _code(ask(engine, "slow", None, X)) is ErrorCode.OVERLOADED
    assert 0.04 <= time.monotonic() - started < 1.0
    assert script.gate is not None
    script.gate.set()
    await asyncio.gather(running, queued)
