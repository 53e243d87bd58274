from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from aimass.contract.request import InferRequest, InferResult
from aimass.deployments.shadow import ShadowTap, Table
from aimass.deployments.stats import StatsRecorder, summarize
from aimass.errors import AimassError, ErrorCode
from aimass.settings import DeploymentSettings

pytestmark = pytest.mark.anyio
WAIT = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Shadow:
    """A fake engine for the copies: answers once released, records what it was asked."""

    def __init__(self, label: int = 1, error: AimassError | None = None) -> None:
        self.asked: list[InferRequest] = []
        self.release = asyncio.Event()
        self.label = label
        self.error = error

    async def __call__(self, request: InferRequest) -> InferResult:
        self.asked.append(request)
        await self.release.wait()
        if self.error is not None:
            raise self.error
        rows = len(request.inputs["x"])
        return InferResult(
            request.model, request.version or 0, {"label": np.full(rows, self.label)}
        )


@dataclass(frozen=True)
class Version:
    model: str
    version: int


@dataclass(frozen=True)
class Shadows:
    shadows: tuple[tuple[Version, float], ...]


@pytest.fixture
def stats() -> Iterator[StatsRecorder]:
    yield StatsRecorder("p", bucket_s=5)


def tap_of(
    stats: StatsRecorder,
    shadow: Shadow,
    *,
    sample: float = 1.0,
    limit: int = 4,
    hold_ms: float = 5.0,
) -> ShadowTap:
    tables: dict[str, Table] = {
        "web": Shadows(((Version("iris", 2), sample),)),
        "quiet": Shadows(()),
    }
    tap = ShadowTap(
        stats,
        DeploymentSettings(shadow_concurrency=limit, shadow_timeout_s=2.5, shadow_hold_ms=hold_ms),
        chance=lambda: 0.5,
    )
    tap.bind(shadow, tables.get)
    return tap


def live(
    model: str = "web", version: int | None = None, row: float = 0.0, label: int = 1
) -> tuple[InferRequest, InferResult]:
    request = InferRequest(model, {"x": np.full((1, 4), row)}, version=version, request_id="r1")
    request.started = asyncio.get_running_loop().time()
    request.served = ("iris", 1)
    if version is None and model in ("web", "quiet", "nothing"):  # as the router marks them
        request.deployment = model
    return request, InferResult("iris", 1, {"label": np.array([label])})


async def settled(tap: ShadowTap) -> None:
    async with asyncio.timeout(WAIT):
        while tap.in_flight:
            await asyncio.sleep(0)


async def test_a_copy_goes_to_the_shadow_version_and_is_compared(stats: StatsRecorder) -> None:
    shadow = Shadow(label=2)
    tap = tap_of(stats, shadow)
    request, answer = live()
    tap.responded(request, answer)
    assert tap.in_flight == 1  # sent off the caller's path: responded returned first
    shadow.release.set()
    await settled(tap)
    (copy,) = shadow.asked
    assert (copy.model, copy.version, copy.timeout) == ("iris", 2, 2.5)
    assert copy.inputs is request.inputs and copy.request_id == "r1" and copy.headers == ()
    entry = summarize(stats.rows())["iris:2"]
    assert (entry["role"], entry["requests"], entry["errors"]) == ("shadow", 1, 0)
    assert entry["comparison"]["outputs"]["label"]["agreement"] == 0.0
    assert entry["comparison"]["outputs"]["label"]["confusion"] == {"1": {"2": 1}}


async def test_copies_beyond_the_bound_are_dropped_and_counted(stats: StatsRecorder) -> None:
    shadow = Shadow()
    tap = tap_of(stats, shadow, limit=2)
    for _ in range(5):
        tap.responded(*live())
    assert tap.in_flight == 2
    shadow.release.set()
    await settled(tap)
    entry = summarize(stats.rows())["iris:2"]
    assert entry["requests"] == 2
    assert entry["comparison"]["dropped"] == 3 and entry["comparison"]["compared"] == 2


async def test_only_the_sampled_fraction_is_copied(stats: StatsRecorder) -> None:
    shadow = Shadow()
    tap = tap_of(stats, shadow, sample=0.4)  # the draw is 0.5: not sampled
    tap.responded(*live())
    assert tap.in_flight == 0
    tap = tap_of(stats, shadow, sample=0.6)
    tap.responded(*live())
    assert tap.in_flight == 1
    await tap.close()


async def test_requests_to_anything_but_a_deployment_with_shadows_are_not_copied(
    stats: StatsRecorder,
) -> None:
    shadow = Shadow()
    tap = tap_of(stats, shadow)
    tap.responded(*live("quiet"))
    tap.responded(*live("iris"))
    tap.responded(*live("iris:1"))
    tap.responded(*live("web", version=1))
    tap.responded(*live("nothing"))
    assert tap.in_flight == 0 and not shadow.asked


async def test_a_failing_shadow_counts_its_errors_and_is_never_compared(
    stats: StatsRecorder,
) -> None:
    shadow = Shadow(error=AimassError(ErrorCode.INTERNAL, "the shadow raised"))
    tap = tap_of(stats, shadow)
    tap.responded(*live())
    shadow.release.set()
    await settled(tap)
    entry = summarize(stats.rows())["iris:2"]
    assert (entry["requests"], entry["errors"]) == (1, 1)
    assert entry["comparison"]["compared"] == 0


async def test_closing_cancels_the_copies_in_flight_and_sends_no_more(stats: StatsRecorder) -> None:
    shadow = Shadow()
    tap = tap_of(stats, shadow)
    tap.responded(*live())
    await tap.close()
    assert tap.in_flight == 0
    tap.responded(*live())
    assert tap.in_flight == 0


async def test_copies_held_together_reach_the_shadow_as_one_call_and_each_is_counted(
    stats: StatsRecorder,
) -> None:
    shadow = Shadow(label=1)
    shadow.release.set()
    tap = tap_of(stats, shadow, limit=8, hold_ms=20.0)
    for i in range(3):
        tap.responded(*live(row=float(i), label=i))
    assert tap.in_flight == 3 and not shadow.asked  # held, not sent yet
    await settled(tap)
    (call,) = shadow.asked
    assert call.inputs["x"][:, 0].tolist() == [0.0, 1.0, 2.0]  # the rows, in order
    entry = summarize(stats.rows())["iris:2"]
    assert entry["requests"] == 3 and entry["comparison"]["compared"] == 3
    # Each live answer is compared with its own row of the shadow's: labels 0, 1, 2 against 1.
    assert entry["comparison"]["outputs"]["label"]["confusion"] == {
        "0": {"1": 1},
        "1": {"1": 1},
        "2": {"1": 1},
    }


async def test_held_copies_go_at_once_when_the_bound_is_reached(stats: StatsRecorder) -> None:
    shadow = Shadow()
    tap = tap_of(stats, shadow, limit=2, hold_ms=60_000.0)
    tap.responded(*live())
    assert not shadow.asked
    tap.responded(*live())
    await asyncio.sleep(0)  # the call's task starts: no hour-long hold first
    assert len(shadow.asked) == 1 and len(shadow.asked[0].inputs["x"]) == 2
    await tap.close()


async def test_with_no_hold_each_copy_is_its_own_call(stats: StatsRecorder) -> None:
    shadow = Shadow()
    shadow.release.set()
    tap = tap_of(stats, shadow, hold_ms=0.0)
    for _ in range(3):
        tap.responded(*live())
    await settled(tap)
    assert [len(call.inputs["x"]) for call in shadow.asked] == [1, 1, 1]


async def test_requests_with_parameters_are_never_stacked(stats: StatsRecorder) -> None:
    shadow = Shadow()
    shadow.release.set()
    tap = tap_of(stats, shadow, hold_ms=20.0)
    for threshold in (0.1, 0.9):
        request, answer = live()
        request.parameters = {"threshold": threshold}
        tap.responded(request, answer)
    await settled(tap)
    assert sorted(call.parameters["threshold"] for call in shadow.asked) == [0.1, 0.9]
