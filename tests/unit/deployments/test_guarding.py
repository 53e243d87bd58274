from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import pytest

from aimass.deployments.guarding import ACTOR, KEEP_S, GuardLoop
from aimass.deployments.records import Deployment, StatsRow
from aimass.deployments.spec import DeploymentSpec, Guard, Target
from aimass.deployments.stats import StatsRecorder
from aimass.errors import AimassError, ErrorCode

NOW = 10_000.0
STABLE = DeploymentSpec(targets=(Target(ref="iris:1", weight=1000),))


def deployment(name: str, spec: DeploymentSpec, revision: int = 3) -> Deployment:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return Deployment(name, spec, revision, at, "me", at, "me")


class Service:
    def __init__(self, *deployments: Deployment, refuse: ErrorCode | None = None) -> None:
        self.deployments = list(deployments)
        self.applied: list[tuple[str, DeploymentSpec, dict[str, object]]] = []
        self.refuse = refuse

    def list(self) -> Sequence[Deployment]:
        return self.deployments

    def apply(
        self,
        name: str,
        spec: DeploymentSpec,
        *,
        by: str,
        kind: str,
        reason: str,
        expect_revision: int | None,
    ) -> Deployment:
        if self.refuse is not None:
            raise AimassError(self.refuse, "refused")
        self.applied.append(
            (
                name,
                spec,
                {"by": by, "kind": kind, "expect_revision": expect_revision, "reason": reason},
            )
        )
        return deployment(name, spec)


class Store:
    bucket_s = 5

    def __init__(self, rows: list[StatsRow]) -> None:
        self.rows = rows
        self.asked: list[tuple[str, float]] = []
        self.pruned: list[float] = []

    def write_stats(self, rows: Iterable[StatsRow]) -> None:
        self.rows.extend(rows)

    def read_stats(self, name: str, since: float) -> list[StatsRow]:
        self.asked.append((name, since))
        return [r for r in self.rows if r.deployment == name]

    def prune_stats(self, before: float) -> int:
        self.pruned.append(before)
        return 0


def failing_canary_rows() -> list[StatsRow]:
    stats = StatsRecorder("p", bucket_s=5, clock=lambda: NOW - 1)
    for i in range(60):
        stats.record("web", "iris:2", "target", 0.001, error=i % 2 == 0)
        stats.record("web", "iris:1", "target", 0.001)
    return stats.rows()


def canary_spec() -> DeploymentSpec:
    return STABLE.with_canary(
        "iris@next", 100, Guard(max_error_rate=0.1, min_requests=50), now=NOW - 30
    )


def loop(service: Service, store: Store) -> GuardLoop:
    resolved = {"iris:1": "iris:1", "iris@next": "iris:2"}

    def resolve(ref: str) -> str:
        if ref not in resolved:
            raise AimassError(ErrorCode.NOT_FOUND, f"{ref} is gone")
        return resolved[ref]

    return GuardLoop(
        service, store, resolve, StatsRecorder("p", bucket_s=5), interval_s=1.0, clock=lambda: NOW
    )


def test_a_tripped_canary_is_applied_as_the_guard_with_the_revision_it_judged() -> None:
    service = Service(deployment("web", canary_spec(), revision=7), deployment("plain", STABLE))
    store = Store(failing_canary_rows())
    ((name, verdict),) = loop(service, store).check()
    assert (name, verdict.action) == ("web", "trip")
    ((applied, spec, how),) = service.applied
    assert applied == "web" and spec.canary is None and spec.weight_of("iris:1") == 1000
    assert how["by"] == ACTOR and how["kind"] == "guard" and how["expect_revision"] == 7
    assert "failed 30 of 60" in str(how["reason"])
    # The window: the canary's since, not earlier (and nothing read for 'plain').
    assert store.asked == [("web", NOW - 30)]


def test_a_conflict_means_another_server_acted_first() -> None:
    service = Service(deployment("web", canary_spec()), refuse=ErrorCode.CONFLICT)
    ((_, verdict),) = loop(service, Store(failing_canary_rows())).check()
    assert verdict.action == "trip" and service.applied == []


def test_other_refusals_are_errors() -> None:
    service = Service(deployment("web", canary_spec()), refuse=ErrorCode.INVALID_INPUT)
    with pytest.raises(AimassError):
        loop(service, Store(failing_canary_rows())).check()


def test_waiting_applies_nothing_and_an_unresolvable_target_is_left_out() -> None:
    odd = STABLE.with_canary("iris@gone", 100, Guard(max_error_rate=0.1), now=NOW - 30)
    service = Service(deployment("web", odd))
    ((_, verdict),) = loop(service, Store(failing_canary_rows())).check()
    assert verdict.action == "wait" and service.applied == []


def test_old_statistics_are_pruned_now_and_then() -> None:
    store = Store([])
    guard = loop(Service(), store)
    guard.check()
    guard.check()
    assert store.pruned == [NOW - KEEP_S]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_a_round_writes_this_process_s_statistics_before_judging() -> None:
    service = Service(deployment("web", canary_spec(), revision=7))
    store = Store([])
    recorder = StatsRecorder("p", bucket_s=5, clock=lambda: NOW - 1)
    guard = GuardLoop(
        service,
        store,
        lambda ref: {"iris@next": "iris:2"}.get(ref, ref),
        recorder,
        interval_s=3600,
        clock=lambda: NOW,
    )
    for i in range(60):
        recorder.record("web", "iris:2", "target", 0.001, error=i % 2 == 0)
    guard.start()
    ((_, verdict),) = await guard.round()
    assert verdict.action == "trip" and len(service.applied) == 1
    recorder.record("web", "iris:1", "target", 0.001)
    await guard.stop()
    assert store.rows[-1].ref == "iris:1"  # stopping wrote what was left
