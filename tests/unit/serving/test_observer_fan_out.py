from __future__ import annotations

import numpy as np

from aimass.contract.request import InferRequest, InferResult
from aimass.errors import AimassError, ErrorCode
from aimass.serving.observer import NULL_OBSERVER, Hooks, Observer, Observers, fan_out, hooks


class Log(Observer):
    def __init__(self, name: str, seen: list[str]) -> None:
        self.name = name
        self.seen = seen

    def received(self, request: InferRequest) -> None:
        self.seen.append(f"{self.name} received")

    def responded(self, request: InferRequest, result: InferResult) -> None:
        self.seen.append(f"{self.name} responded")

    def failed(self, request: InferRequest | None, error: AimassError) -> None:
        self.seen.append(f"{self.name} failed")


def test_fan_out_tells_every_observer_in_order() -> None:
    seen: list[str] = []
    both = fan_out(Log("a", seen), NULL_OBSERVER, Log("b", seen))
    request = InferRequest("m", {"x": np.zeros(1)})
    both.received(request)
    both.responded(request, InferResult("m", 1, {}))
    both.failed(None, AimassError(ErrorCode.INTERNAL, "boom"))
    # Steps nobody overrides still reach every observer without error.
    both.queued(request, "m", 1)
    both.batched("m", 1, 1)
    both.computed("m", 0.1, 1)
    assert seen == [
        "a received",
        "b received",
        "a responded",
        "b responded",
        "a failed",
        "b failed",
    ]


def test_fan_out_of_nothing_active_stays_free_for_the_engine() -> None:
    assert fan_out() is NULL_OBSERVER
    told = hooks(fan_out(NULL_OBSERVER, Observer()))
    assert all(getattr(told, step) is None for step in Hooks.__slots__)


def test_fan_out_of_one_is_that_one() -> None:
    one = Log("a", [])
    assert fan_out(NULL_OBSERVER, one) is one
    assert isinstance(fan_out(one, Log("b", [])), Observers)


class Answers(Observer):
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def responded(self, request: InferRequest, result: InferResult) -> None:
        self.seen.append("answers responded")


def test_hooks_call_only_the_observers_overriding_each_step() -> None:
    seen: list[str] = []
    log, answers = Log("a", seen), Answers(seen)
    told = hooks(fan_out(log, Observers([answers, NULL_OBSERVER])))
    # Nobody overrides them: the engine and the batcher skip these steps.
    assert told.queued is None and told.batched is None and told.computed is None
    assert told.loaded is None and told.evicted is None
    # Only one overrides these: its own method, with no loop around it.
    assert told.received == log.received
    assert told.failed == log.failed
    request = InferRequest("m", {"x": np.zeros(1)})
    assert told.responded is not None
    told.responded(request, InferResult("m", 1, {}))
    assert seen == ["a responded", "answers responded"]
