from __future__ import annotations

import numpy as np
import pytest

from aimass.contract.request import InferRequest, InferResult
from aimass.deployments.records import StatsRow
from aimass.deployments.stats import StatsObserver, StatsRecorder, summarize
from aimass.errors import AimassError, ErrorCode


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def recorder(clock: Clock, process: str = "p1") -> StatsRecorder:
    return StatsRecorder(process, bucket_s=5, clock=clock)


def test_requests_are_counted_per_version_role_and_time_bucket() -> None:
    clock = Clock(1002.0)
    stats = recorder(clock)
    stats.record("web", "iris:1", "target", 0.001)
    stats.record("web", "iris:1", "target", 0.003, error=True)
    stats.record("web", "iris:2", "shadow", 0.002)
    clock.now = 1006.0
    stats.record("web", "iris:1", "target", 0.001)
    rows = {(r.ref, r.role, r.bucket): r for r in stats.rows()}
    assert set(rows) == {
        ("iris:1", "target", 1000),
        ("iris:2", "shadow", 1000),
        ("iris:1", "target", 1005),
    }
    first = rows["iris:1", "target", 1000]
    assert (first.deployment, first.process, first.requests, first.errors) == ("web", "p1", 2, 1)
    assert sum(first.latency) == 2


def test_only_changed_cells_are_written_again_with_their_totals_so_far() -> None:
    clock = Clock(1000.0)
    stats = recorder(clock)
    stats.record("web", "iris:1", "target", 0.001)
    assert len(stats.rows()) == 1
    assert stats.rows() == []
    stats.record("web", "iris:1", "target", 0.001)
    (row,) = stats.rows()
    assert row.requests == 2  # an upsert of the bucket so far, not an increment


def test_a_finished_bucket_is_forgotten_once_written() -> None:
    clock = Clock(1000.0)
    stats = recorder(clock)
    stats.record("web", "iris:1", "target", 0.001)
    stats.rows()
    clock.now = 1010.0
    stats.record("web", "iris:1", "target", 0.001)
    (row,) = stats.rows()
    assert row.bucket == 1010 and row.requests == 1


def test_a_shadow_s_cell_carries_its_comparison() -> None:
    stats = recorder(Clock(1000.0))
    stats.comparison("web", "iris:2").drop()
    (row,) = stats.rows()
    assert row.role == "shadow" and row.comparison["dropped"] == 1 and row.requests == 0


def request(
    model: str, served: tuple[str, int] | None = ("iris", 1), *, routed: bool = True
) -> InferRequest:
    """A request to ``model``; ``routed``: sent by its weights, as the router marks it."""
    req = InferRequest(model, {"x": np.zeros((1, 4))}, started=10.0)
    req.served = served
    req.deployment = model if routed else None
    return req


def test_the_observer_counts_requests_to_deployments_and_server_side_errors_only() -> None:
    stats = recorder(Clock(1000.0))
    observer = StatsObserver(stats, now=lambda: 10.25)
    observer.responded(request("web"), InferResult("iris", 1, {}))
    # Not sent by a deployment's weights: a model called directly, a version pinned by hand.
    observer.responded(request("iris", routed=False), InferResult("iris", 1, {}))
    observer.responded(request("web", routed=False), InferResult("iris", 1, {}))
    observer.failed(request("web"), AimassError(ErrorCode.INTERNAL, "the model raised"))
    observer.failed(request("web"), AimassError(ErrorCode.TIMEOUT, "too slow"))
    observer.failed(request("web"), AimassError(ErrorCode.INVALID_INPUT, "bad shape"))
    observer.failed(request("web", served=None), AimassError(ErrorCode.NOT_FOUND, "gone"))
    observer.failed(None, AimassError(ErrorCode.INTERNAL, "a load failed"))
    (row,) = stats.rows()
    assert (row.deployment, row.ref, row.role) == ("web", "iris:1", "target")
    assert (row.requests, row.errors) == (4, 2)
    summary = summarize([row])["iris:1"]
    assert summary["p50_ms"] == pytest.approx(250, rel=0.13)


def row(
    ref: str, role: str = "target", *, process: str = "p1", bucket: int = 1000, **kw: object
) -> StatsRow:
    values: dict[str, object] = {"requests": 0, "errors": 0, "latency": [], "comparison": {}}
    values.update(kw)
    return StatsRow(deployment="web", ref=ref, role=role, process=process, bucket=bucket, **values)  # type: ignore[arg-type]


def test_summarize_adds_up_every_process_and_bucket() -> None:
    fast, slow = StatsRecorder("a", bucket_s=5), StatsRecorder("b", bucket_s=5)
    for _ in range(98):
        fast.record("web", "iris:1", "target", 0.001)
    for _ in range(2):
        slow.record("web", "iris:1", "target", 0.100, error=True)
    slow.record("web", "iris:2", "shadow", 0.004)
    summary = summarize([*fast.rows(), *slow.rows()])
    live = summary["iris:1"]
    assert (live["role"], live["requests"], live["errors"]) == ("target", 100, 2)
    assert live["error_rate"] == 0.02
    assert live["p50_ms"] == pytest.approx(1.0, rel=0.13)
    assert live["p99_ms"] == pytest.approx(100.0, rel=0.13)
    assert "comparison" not in live
    assert summary["iris:2"]["role"] == "shadow"
    assert summary["iris:2"]["comparison"]["compared"] == 0


def test_a_version_with_no_requests_has_no_latency() -> None:
    summary = summarize([row("iris:2", "shadow", comparison={"dropped": 3})])["iris:2"]
    assert summary["p50_ms"] is None and summary["error_rate"] == 0.0
    assert summary["comparison"]["dropped"] == 3


def test_a_shadow_made_a_target_shows_as_the_target_with_its_shadow_figures() -> None:
    summary = summarize([row("iris:2", "shadow", requests=3), row("iris:2", requests=5)])
    assert summary["iris:2"]["requests"] == 5
    assert summary["iris:2"]["shadow"]["requests"] == 3


@pytest.mark.anyio
async def test_a_failed_write_is_tried_again() -> None:
    calls: list[list[StatsRow]] = []

    def write(rows: list[StatsRow]) -> None:
        calls.append(rows)
        if len(calls) == 1:
            raise OSError("database away")

    stats = StatsRecorder("p", bucket_s=5)
    stats.record("web", "iris:1", "target", 0.001)
    await stats.flush(write)
    await stats.flush(write)
    await stats.flush(write)
    assert [len(rows) for rows in calls] == [1, 1]
