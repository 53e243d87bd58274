from __future__ import annotations

import pytest

from aimass.deployments.guard import judge
from aimass.deployments.records import StatsRow
from aimass.deployments.spec import DeploymentSpec, Guard, Progression, Target
from aimass.deployments.stats import StatsRecorder

NOW = 10_000.0
RESOLVED = {"iris:1": "iris:1", "iris@next": "iris:2"}


def canary(
    guard: Guard | None = None, progression: Progression | None = None, *, since: float = NOW - 30
) -> DeploymentSpec:
    base = DeploymentSpec(targets=(Target(ref="iris:1", weight=1000),))
    return base.with_canary(
        "iris@next",
        100,
        guard or Guard(max_error_rate=0.02, max_p99_ratio=1.5, window_s=60, min_requests=50),
        progression,
        now=since,
    )


def traffic(
    ref: str, n: int, seconds: float, *, errors: int = 0, at: float = NOW - 1, role: str = "target"
) -> list[StatsRow]:
    stats = StatsRecorder("p", bucket_s=5, clock=lambda: at)
    for i in range(n):
        stats.record("web", ref, role, seconds, error=i < errors)  # type: ignore[arg-type]
    return stats.rows()


def verdict(spec: DeploymentSpec, rows: list[StatsRow], now: float = NOW) -> tuple[str, str]:
    out = judge(spec, rows, resolved=RESOLVED, now=now, bucket_s=5)
    if out.action == "wait":
        assert out.spec is None
    return out.action, out.reason


def test_it_waits_for_min_requests() -> None:
    action, reason = verdict(canary(), traffic("iris:2", 49, 0.001, errors=49))
    assert action == "wait" and "49 of 50" in reason


def test_an_error_rate_above_the_limit_trips_the_canary_back_to_the_stable_version() -> None:
    spec = canary()
    rows = traffic("iris:2", 100, 0.001, errors=3) + traffic("iris:1", 900, 0.001)
    out = judge(spec, rows, resolved=RESOLVED, now=NOW, bucket_s=5)
    assert out.action == "trip"
    assert "failed 3 of 100 requests" in out.reason and "3.0%" in out.reason
    assert out.spec is not None
    assert out.spec.canary is None and out.spec.weight_of("iris:1") == 1000


def test_an_error_rate_at_the_limit_holds() -> None:
    rows = traffic("iris:2", 100, 0.001, errors=2) + traffic("iris:1", 900, 0.001)
    assert verdict(canary(), rows)[0] == "wait"


def test_a_p99_too_far_above_the_stable_one_trips_the_canary() -> None:
    rows = traffic("iris:2", 60, 0.010) + traffic("iris:1", 600, 0.001)
    action, reason = verdict(canary(), rows)
    assert action == "trip" and "p99" in reason and "1.5x limit" in reason


def test_a_p99_within_the_ratio_holds() -> None:
    rows = traffic("iris:2", 60, 0.0012) + traffic("iris:1", 600, 0.001)
    assert verdict(canary(), rows)[0] == "wait"


def test_requests_from_before_the_canary_s_weight_changed_are_not_judged() -> None:
    spec = canary(since=NOW - 3)
    old = traffic("iris:2", 100, 0.001, errors=100, at=NOW - 20)
    assert verdict(spec, old + traffic("iris:2", 10, 0.001, at=NOW - 1))[0] == "wait"


def test_requests_older_than_the_window_are_not_judged() -> None:
    spec = canary(since=NOW - 600)
    old = traffic("iris:2", 100, 0.001, errors=100, at=NOW - 120)
    assert verdict(spec, old)[0] == "wait"


def test_shadow_rows_are_not_the_canary_s() -> None:
    rows = traffic("iris:2", 100, 0.001, errors=100, role="shadow")
    assert verdict(canary(), rows)[0] == "wait"


def test_a_progressive_canary_steps_after_its_interval_with_the_guard_holding() -> None:
    spec = canary(progression=Progression(step=100, interval_s=20, max_weight=500))
    rows = traffic("iris:2", 60, 0.001) + traffic("iris:1", 600, 0.001)
    out = judge(spec, rows, resolved=RESOLVED, now=NOW, bucket_s=5)
    assert out.action == "step" and "10% -> 20%" in out.reason
    assert out.spec is not None and out.spec.weight_of("iris@next") == 200
    assert out.spec.canary is not None and out.spec.canary.since == NOW


def test_it_does_not_step_before_the_interval_nor_without_evidence() -> None:
    progression = Progression(step=100, interval_s=60, max_weight=500)
    rows = traffic("iris:2", 60, 0.001) + traffic("iris:1", 600, 0.001)
    assert verdict(canary(progression=progression), rows)[0] == "wait"
    quiet = canary(progression=progression, since=NOW - 120)
    assert verdict(quiet, traffic("iris:2", 5, 0.001))[0] == "wait"


def test_a_canary_at_its_max_weight_that_holds_is_promoted() -> None:
    spec = canary(progression=Progression(step=100, interval_s=20, max_weight=100))
    rows = traffic("iris:2", 60, 0.001) + traffic("iris:1", 600, 0.001)
    out = judge(spec, rows, resolved=RESOLVED, now=NOW, bucket_s=5)
    assert out.action == "promote"
    assert out.spec is not None and out.spec.targets == (Target(ref="iris@next", weight=1000),)


def test_a_deployment_without_a_canary_waits() -> None:
    spec = DeploymentSpec(targets=(Target(ref="iris:1", weight=1000),))
    assert verdict(spec, [])[0] == "wait"


@pytest.mark.parametrize(
    "guard", [Guard(min_requests=10), Guard(max_p99_ratio=1.5, min_requests=10)]
)
def test_a_guard_without_limits_or_stable_traffic_never_trips(guard: Guard) -> None:
    rows = traffic("iris:2", 60, 5.0, errors=60)
    assert verdict(canary(guard), rows)[0] == "wait"
