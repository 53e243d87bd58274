from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from aimass.contract.request import Caller, InferRequest, InferResult
from aimass.contract.signature import Datatype, Signature, TensorSpec
from aimass.errors import AimassError, ErrorCode
from aimass.registry.records import VersionInfo
from aimass.roles import Role
from aimass.serving import Engine, ModelStatus, build_engine
from aimass.serving.observer import Observer
from aimass.settings import ModelBatching, ServingSettings
from tests.unit.serving.serving_doubles import WAIT, Script, SpyRegistry, ask

pytestmark = pytest.mark.anyio

EngineFactory = Callable[..., Engine]


@pytest.fixture
async def make_engine(registry: SpyRegistry) -> AsyncIterator[EngineFactory]:
    engines: list[Engine] = []

    def make(**settings: Any) -> Engine:
        engine = build_engine(registry, ServingSettings(**settings))
        engines.append(engine)
        return engine

    yield make
    for script in registry.scripts.values():
        if script.gate is not None:
            script.gate.set()
    for engine in engines:
        await engine.close()


@pytest.fixture
def iris_model(
    registry: SpyRegistry, iris: tuple[Any, np.ndarray[Any, Any]]
) -> np.ndarray[Any, Any]:
    clf, x = iris
    registry.register(clf, "iris", sample_input=x[:5])
    return x


async def started(engine: Engine, *preload: str) -> Engine:
    await engine.start(preload)
    return engine


async def code_of(call: Any) -> ErrorCode:
    with pytest.raises(AimassError) as caught:
        await call
    return caught.value.code


async def test_concurrent_requests_are_batched_and_match_unbatched_predictions(
    registry: SpyRegistry, iris_model: np.ndarray[Any, Any], make_engine: EngineFactory
) -> None:
    engine = await started(make_engine(max_delay_ms=20), "iris")
    unbatched = registry.load("iris")
    slices = [iris_model[(3 * i) % 140 : (3 * i) % 140 + 1 + i % 4] for i in range(50)]
    results = await asyncio.gather(*(ask(engine, "iris", None, {"input": s}) for s in slices))
    calls = registry.calls["iris"]
    assert len(calls) < len(slices)
    assert sum(calls) == sum(len(s) for s in slices)
    for rows, result in zip(slices, results, strict=True):
        assert (result.model_name, result.model_version) == ("iris", 1)
        expected = unbatched.predict_named({"input": rows})
        assert set(result.outputs) == {"label", "probabilities"}
        np.testing.assert_array_equal(result.outputs["label"], expected["label"])
        np.testing.assert_allclose(result.outputs["probabilities"], expected["probabilities"])


async def test_outputs_are_selected_and_unknown_ones_refused(
    iris_model: np.ndarray[Any, Any], make_engine: EngineFactory
) -> None:
    engine = await started(make_engine())
    result = await ask(engine, "iris:1", None, {"input": iris_model[:2]}, outputs=["label"])
    assert list(result.outputs) == ["label"]
    bad = ask(engine, "iris", 1, {"input": iris_model[:2]}, outputs=["logits"])
    assert await code_of(bad) is ErrorCode.INVALID_INPUT


async def test_references_resolve_by_alias_version_and_latest(
    registry: SpyRegistry, iris: tuple[Any, np.ndarray[Any, Any]], make_engine: EngineFactory
) -> None:
    clf, x = iris
    registry.register(clf, "iris", sample_input=x[:5])
    registry.register(clf, "iris", sample_input=x[:5])
    registry.set_alias("iris", "production", 1)
    engine = await started(make_engine())
    assert (await ask(engine, "iris", None, {"input": x[:1]})).model_version == 2
    assert (await ask(engine, "iris@production", None, {"input": x[:1]})).model_version == 1
    assert (await ask(engine, "iris", 1, {"input": x[:1]})).model_version == 1
    assert (await engine.metadata("iris@production")).version == 1
    assert await code_of(ask(engine, "iris@production", 2, {"input": x[:1]})) is (
        ErrorCode.INVALID_INPUT
    )
    assert await code_of(ask(engine, "iris:1", 2, {"input": x[:1]})) is ErrorCode.INVALID_INPUT


async def test_unknown_models_and_versions_are_not_found(
    iris_model: np.ndarray[Any, Any], make_engine: EngineFactory
) -> None:
    engine = await started(make_engine())
    x = {"input": iris_model[:1]}
    assert await code_of(ask(engine, "nope", None, x)) is ErrorCode.NOT_FOUND
    assert await code_of(ask(engine, "iris", 7, x)) is ErrorCode.NOT_FOUND
    assert await code_of(ask(engine, "iris@staging", None, x)) is ErrorCode.NOT_FOUND
    assert await code_of(engine.metadata("nope")) is ErrorCode.NOT_FOUND


async def test_a_bad_request_fails_alone(
    registry: SpyRegistry, iris_model: np.ndarray[Any, Any], make_engine: EngineFactory
) -> None:
    engine = await started(make_engine(max_delay_ms=50), "iris")
    good = [ask(engine, "iris", None, {"input": iris_model[i : i + 2]}) for i in range(6)]
    bad = [
        ask(engine, "iris", None, {"input": iris_model[:2, :3]}),
        ask(engine, "iris", None, {"input": np.array([["a"] * 4])}),
        ask(engine, "iris", None, {"wrong": iris_model[:2]}),
        ask(engine, "iris", None, {"input": iris_model[:0]}),
    ]
    results = await asyncio.gather(*good, *bad, return_exceptions=True)
    for result in results[: len(good)]:
        assert not isinstance(result, BaseException)
    for result in results[len(good) :]:
        assert isinstance(result, AimassError)
        assert result.code is ErrorCode.INVALID_INPUT
    assert len(registry.calls["iris"]) < len(good)


async def test_variable_length_sequences_batch_separately(
    registry: SpyRegistry, make_engine: EngineFactory
) -> None:
    signature = Signature(
        inputs=(TensorSpec(name="x", datatype=Datatype.FP64, shape=(-1, -1)),),
        outputs=(TensorSpec(name="output", datatype=Datatype.FP64, shape=(-1, -1)),),
    )
    registry.add_scripted("seq", signature=signature)
    engine = await started(make_engine(max_delay_ms=20), "seq")
    inputs = [np.full((1 + i % 2, 2 + i % 3), float(i)) for i in range(12)]
    results = await asyncio.gather(*(ask(engine, "seq", None, {"x": x}) for x in inputs))
    for x, result in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(result.outputs["output"], x * 2)
    assert 3 <= len(registry.calls["seq"]) < len(inputs)


async def test_a_full_queue_is_overloaded_immediately(
    registry: SpyRegistry, make_engine: EngineFactory
) -> None:
    script = Script(gate=threading.Event())
    registry.add_scripted("slow", script)
    settings = {"max_batch_size": 1, "max_delay_ms": 0, "queue_size": 2, "admission_wait_ms": 0}
    engine = await started(make_engine(**settings), "slow")
    x = {"x": np.ones((1, 2))}
    running = asyncio.ensure_future(ask(engine, "slow", None, x))
    assert await asyncio.to_thread(script.entered.wait, WAIT)
    queued = [asyncio.ensure_future(ask(engine, "slow", None, x)) for _ in range(2)]
    await asyncio.sleep(0)
    assert await code_of(ask(engine, "slow", None, x)) is ErrorCode.OVERLOADED
    assert script.gate is not None
    script.gate.set()
    await asyncio.gather(running, *queued)


async def test_a_slow_request_times_out(registry: SpyRegistry, make_engine: EngineFactory) -> None:
    script = Script(gate=threading.Event())
    registry.add_scripted("slow", script)
    engine = await started(make_engine(max_delay_ms=0), "slow")
    call = ask(engine, "slow", None, {"x": np.ones((1, 2))}, timeout=0.05)
    assert await code_of(call) is ErrorCode.TIMEOUT


async def test_a_request_waiting_on_a_slow_load_times_out_without_cancelling_it(
    registry: SpyRegistry, make_engine: EngineFactory
) -> None:
    gate = threading.Event()
    registry.add_scripted("big", Script(load_gate=gate))
    engine = await started(make_engine())
    x = {"x": np.ones((1, 2))}
    assert await code_of(ask(engine, "big", None, x, timeout=0.05)) is ErrorCode.TIMEOUT
    waiting = asyncio.ensure_future(ask(engine, "big", None, x))
    await asyncio.sleep(0)
    gate.set()
    np.testing.assert_array_equal((await waiting).outputs["output"], x["x"] * 2)
    assert registry.loads["big"] == 1


async def test_the_memory_budget_evicts_idle_models_not_busy_ones(
    registry: SpyRegistry, make_engine: EngineFactory
) -> None:
    mib = 1024 * 1024
    busy = Script(gate=threading.Event())
    registry.add_scripted("busy", busy, size=mib)
    for name in ("a", "b"):
        registry.add_scripted(name, size=mib)
    engine = await started(make_engine(memory_budget_mb=2.5, max_delay_ms=0))
    x = {"x": np.ones((1, 2))}
    in_flight = asyncio.ensure_future(ask(engine, "busy", None, x))
    assert await asyncio.to_thread(busy.entered.wait, WAIT)
    await ask(engine, "a", None, x)
    await ask(engine, "b", None, x)  # over budget: a (idle) goes, busy stays
    assert {s.name: s.status for s in engine.index()} == {
        "busy": ModelStatus.READY,
        "b": ModelStatus.READY,
    }
    assert busy.gate is not None
    busy.gate.set()
    await in_flight
    await ask(engine, "a", None, x)  # reloads a and evicts busy, now the least recent idle
    assert {s.name for s in engine.index()} == {"a", "b"}
    assert registry.loads == {"busy": 1, "a": 2, "b": 1}


async def test_a_failing_load_does_not_affect_other_models(
    registry: SpyRegistry, iris_model: np.ndarray[Any, Any], make_engine: EngineFactory
) -> None:
    registry.add_scripted("broken", Script(load_error=RuntimeError("boom")))
    engine = await started(make_engine(), "broken", "iris", "missing")
    assert engine.ready
    states = {s.name: s for s in engine.index()}
    assert states["broken"].status is ModelStatus.UNAVAILABLE
    assert states["broken"].reason
    assert states["iris"].status is ModelStatus.READY
    assert await code_of(ask(engine, "broken", None, {"x": np.ones((1, 2))})) is (
        ErrorCode.INTERNAL
    )
    assert (await ask(engine, "iris", None, {"input": iris_model[:1]})).model_version == 1
    assert await code_of(engine.load("broken")) is ErrorCode.INTERNAL


async def test_load_unload_and_readiness(registry: SpyRegistry, make_engine: EngineFactory) -> None:
    registry.add_scripted("m")
    engine = make_engine()
    assert not engine.ready
    assert await code_of(ask(engine, "m", None, {"x": np.ones((1, 2))})) is ErrorCode.NOT_READY
    await engine.start()
    assert engine.ready
    await engine.load("m")
    assert await engine.is_ready("m", 1)
    await engine.unload("m")
    assert engine.index() == []
    assert registry.loads["m"] == 1


async def test_a_readiness_probe_alone_brings_a_model_up(
    registry: SpyRegistry, make_engine: EngineFactory
) -> None:
    gate = threading.Event()
    registry.add_scripted("m", Script(load_gate=gate))
    engine = await started(make_engine())
    assert engine.index() == []
    assert not await engine.is_ready("m")  # not loaded: the probe starts its load
    assert [(s.name, s.status) for s in engine.index()] == [("m", ModelStatus.LOADING)]
    assert not await engine.is_ready("m")  # a second probe waits for the same load
    gate.set()
    await engine.load("m")  # shares the load already running
    assert await engine.is_ready("m")
    assert registry.loads["m"] == 1
    assert await code_of(engine.is_ready("nope")) is ErrorCode.NOT_FOUND


async def test_per_model_batching_overrides(
    registry: SpyRegistry, make_engine: EngineFactory
) -> None:
    registry.add_scripted("small")
    engine = await started(
        make_engine(max_delay_ms=20, per_model={"small": ModelBatching(max_batch_size=2)}), "small"
    )
    await asyncio.gather(*(ask(engine, "small", None, {"x": np.ones((1, 2))}) for _ in range(8)))
    assert max(registry.calls["small"]) <= 2


async def test_close_drains_in_flight_requests(
    registry: SpyRegistry, make_engine: EngineFactory
) -> None:
    script = Script(gate=threading.Event())
    registry.add_scripted("slow", script)
    engine = await started(make_engine(max_batch_size=1, max_delay_ms=0), "slow")
    pending = [
        asyncio.ensure_future(ask(engine, "slow", None, {"x": np.full((1, 2), float(i))}))
        for i in range(4)
    ]
    assert await asyncio.to_thread(script.entered.wait, WAIT)
    closing = asyncio.ensure_future(engine.close())
    await asyncio.sleep(0)
    assert not engine.ready
    assert await code_of(ask(engine, "slow", None, {"x": np.ones((1, 2))})) is (ErrorCode.NOT_READY)
    assert not closing.done()
    assert script.gate is not None
    script.gate.set()
    results = await asyncio.gather(*pending)
    await closing
    assert [float(r.outputs["output"][0, 0]) for r in results] == [0.0, 2.0, 4.0, 6.0]
    assert engine.index() == []


class Recorder(Observer):
    """Writes down every step it is told of."""

    def __init__(self) -> None:
        self.steps: list[tuple[Any, ...]] = []

    def received(self, request: InferRequest) -> None:
        self.steps.append(("received", request.model, request.caller))

    def queued(self, request: InferRequest, model: str, depth: int) -> None:
        self.steps.append(("queued", model))

    def batched(self, model: str, requests: int, rows: int) -> None:
        self.steps.append(("batched", model, requests, rows))

    def computed(self, model: str, seconds: float, rows: int) -> None:
        assert seconds >= 0
        self.steps.append(("computed", model, rows))

    def responded(self, request: InferRequest, result: InferResult) -> None:
        self.steps.append(("responded", f"{result.model_name}:{result.model_version}"))

    def failed(self, request: InferRequest | None, error: AimassError) -> None:
        self.steps.append(("failed", None if request is None else request.model, error.code))

    def loaded(self, info: VersionInfo, seconds: float) -> None:
        self.steps.append(("loaded", info.ref))

    def evicted(self, info: VersionInfo) -> None:
        self.steps.append(("evicted", info.ref))


async def test_the_observer_is_told_of_every_step(registry: SpyRegistry) -> None:
    registry.add_scripted("m")
    registry.add_scripted("broken", Script(load_error=RuntimeError("boom")))
    recorder = Recorder()
    engine = build_engine(registry, ServingSettings(max_delay_ms=0), observer=recorder)
    await engine.start(["m"])
    caller = Caller("key_1", Role.INVOKER)
    request = InferRequest("m", {"x": np.ones((2, 2))}, caller=caller, request_id="r-1")
    await engine.infer(request)
    assert await code_of(ask(engine, "nope", None, {"x": np.ones((1, 2))})) is ErrorCode.NOT_FOUND
    assert await code_of(ask(engine, "broken", None, {"x": np.ones((1, 2))})) is ErrorCode.INTERNAL
    await engine.unload("m")
    await engine.close()
    assert recorder.steps == [
        ("loaded", "m:1"),
        ("received", "m", caller),
        ("queued", "m:1"),
        ("batched", "m:1", 1, 2),
        ("computed", "m:1", 2),
        ("responded", "m:1"),
        ("received", "nope", None),
        ("failed", "nope", ErrorCode.NOT_FOUND),
        ("received", "broken", None),
        ("failed", None, ErrorCode.INTERNAL),
        ("failed", "broken", ErrorCode.INTERNAL),
        ("evicted", "m:1"),
    ]
