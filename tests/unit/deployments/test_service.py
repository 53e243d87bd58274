"""The one implementation of every deployment change, over a real registry on SQLite.

The PostgreSQL path runs the same change, verify and rollback rules at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from aimass.deployments.service import Deployments
from aimass.deployments.spec import Guard, Progression, Target
from aimass.deployments.store import DeploymentStore
from aimass.errors import AimassError, ErrorCode
from aimass.gateway.audit import AuditLog
from aimass.registry import Registry
from aimass.registry.records import VersionInfo
from aimass.settings import RegistrySettings, Settings
from aimass.testing.models import iris_classifier


class Verifier:
    """Records every version it is asked to verify; refuses those in ``failing``."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.failing: set[str] = set()

    def __call__(self, info: VersionInfo) -> None:
        self.seen.append(info.ref)
        if info.ref in self.failing:
            raise RuntimeError("the warm-up call raised")


def _open(settings: Settings) -> Registry:
    registry = Registry.from_settings(settings)
    model, x = iris_classifier()
    for _ in range(4):
        registry.register(model, "iris", sample_input=x[:2])
    registry.set_alias("iris", "production", 1)
    registry.archive_version("iris", 4)
    return registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """iris versions 1-3 ready (4 archived), iris@production at 1, on SQLite."""
    opened = _open(Settings(home=tmp_path_factory.mktemp("home")))
    yield opened
    opened.close()


@pytest.fixture
def verifier() -> Verifier:
    """A fresh verifier for each test."""
    return Verifier()


@pytest.fixture
def service(registry: Registry, verifier: Verifier) -> Deployments:
    """The service over the module's registry, verifying through ``verifier``."""
    store = DeploymentStore(registry.database)
    return Deployments(store, registry, verify=verifier, source="tests")


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A deployment name no other test of the module uses."""
    test: str = request.node.name
    return "d-" + test.split("[")[0][5:40].replace("_", "-")


def _weights(service: Deployments, name: str) -> dict[str, float]:
    return {t.ref: t.percent for t in service.get(name).spec.targets}


def test_create_sends_everything_to_one_verified_target(
    service: Deployments, verifier: Verifier, name: str
) -> None:
    created = service.create(name, "iris:1", sticky="header:X-User-Id", by="alice")
    assert created.public()["targets"] == [{"ref": "iris:1", "weight": 100.0}]
    assert created.public()["sticky"] == "header:x-user-id"
    assert verifier.seen == ["iris:1"]
    with pytest.raises(AimassError) as taken:
        service.create(name, "iris:2", by="alice")
    assert taken.value.code is ErrorCode.ALREADY_EXISTS
    assert verifier.seen == ["iris:1"]


@pytest.mark.parametrize(
    ("deployment", "ref", "code"),
    [
        ("iris", "iris:1", ErrorCode.CONFLICT),  # a model's name
        ("Bad Name!", "iris:1", ErrorCode.INVALID_INPUT),
        ("d-bare", "iris", ErrorCode.INVALID_INPUT),  # a bare name could change under it
        ("d-missing", "iris:99", ErrorCode.NOT_FOUND),
        ("d-archived", "iris:4", ErrorCode.NOT_FOUND),
        ("d-no-alias", "iris@nope", ErrorCode.NOT_FOUND),
        ("d-no-model", "nope:1", ErrorCode.NOT_FOUND),
    ],
)
def test_create_refuses(
    service: Deployments, verifier: Verifier, deployment: str, ref: str, code: ErrorCode
) -> None:
    with pytest.raises(AimassError) as refused:
        service.create(deployment, ref, by="alice")
    assert refused.value.code is code
    assert verifier.seen == []
    assert deployment not in [d.name for d in service.list()]


def test_a_swap_verifies_only_the_new_version(
    service: Deployments, verifier: Verifier, name: str
) -> None:
    service.create(name, "iris:1", by="a")
    service.set(name, [Target(ref="iris:1", weight=900), Target(ref="iris:2", weight=100)], by="a")
    swapped = service.set(name, [Target(ref="iris:2", weight=1000)], by="a")
    assert verifier.seen == ["iris:1", "iris:2"]
    assert swapped.revision == 3
    # iris@production is iris:1, already verified when it was a target: nothing new loads.
    service.set(
        name, [Target(ref="iris:2", weight=500), Target(ref="iris@production", weight=500)], by="a"
    )
    assert verifier.seen == ["iris:1", "iris:2", "iris:1"]


def test_a_version_that_fails_to_warm_leaves_the_deployment_as_it_was(
    service: Deployments, verifier: Verifier, registry: Registry, name: str
) -> None:
    service.create(name, "iris:1", by="a")
    verifier.failing.add("iris:3")
    with pytest.raises(AimassError) as refused:
        service.set(name, [Target(ref="iris:3", weight=1000)], by="a")
    assert refused.value.code is ErrorCode.CONFLICT
    assert "iris:3" in refused.value.message and "RuntimeError" in refused.value.message
    with pytest.raises(AimassError):
        service.shadow(name, "iris:3", 0.5, by="a")
    kept = service.get(name)
    assert (kept.revision, _weights(service, name)) == (1, {"iris:1": 100.0})
    assert [e.kind for e in service.history(name)] == ["create"]


def test_unchanged_weights_write_nothing(service: Deployments, name: str) -> None:
    service.create(name, "iris:1", by="a")
    same = service.set(name, [Target(ref="iris:1", weight=1000)], by="a")
    assert same.revision == 1
    with pytest.raises(AimassError) as bad:
        service.set(name, [Target(ref="iris:1", weight=500)], by="a")
    assert bad.value.code is ErrorCode.INVALID_INPUT


def test_canary_then_promote(service: Deployments, name: str) -> None:
    service.create(name, "iris:1", by="a")
    guard = Guard(max_error_rate=0.02, max_p99_ratio=1.5, window_s=60, min_requests=50)
    steps = Progression(step=100, interval_s=60, max_weight=500)
    on_trial = service.canary(name, "iris:2", 100, guard, steps, by="a")
    assert _weights(service, name) == {"iris:1": 90.0, "iris:2": 10.0}
    assert on_trial.spec.canary is not None and on_trial.spec.canary.guard == guard
    assert on_trial.public()["canary"]["progression"]["max_weight"] == 50.0
    promoted = service.promote(name, by="a")
    assert (promoted.spec.canary, _weights(service, name)) == (None, {"iris:2": 100.0})
    with pytest.raises(AimassError) as none:
        service.promote(name, by="a")
    assert none.value.code is ErrorCode.CONFLICT


def test_rollbacks_walk_back_through_history(service: Deployments, name: str) -> None:
    service.create(name, "iris:1", by="a")
    service.set(name, [Target(ref="iris:2", weight=1000)], by="a")
    service.shadow(name, "iris:3", 0.25, by="a")
    service.set(name, [Target(ref="iris:1", weight=1000)], by="a")
    service.rollback(name, by="b")
    assert _weights(service, name) == {"iris:2": 100.0}
    assert [s.ref for s in service.get(name).spec.shadows] == ["iris:3"]
    service.rollback(name, by="b")
    assert service.get(name).spec.shadows == ()
    service.rollback(name, by="b")
    assert _weights(service, name) == {"iris:1": 100.0}
    with pytest.raises(AimassError) as created:
        service.rollback(name, by="b")
    assert created.value.code is ErrorCode.CONFLICT
    # A change after rollbacks is itself the next one to undo.
    service.set(name, [Target(ref="iris:3", weight=1000)], by="a")
    service.rollback(name, by="b")
    assert _weights(service, name) == {"iris:1": 100.0}
    kinds = [e.kind for e in service.history(name)]
    assert kinds == ["create", "set", "shadow", "set", *["rollback"] * 3, "set", "rollback"]
    assert "undoes change" in service.history(name)[-1].reason


def test_rollback_of_a_trip_puts_the_canary_back_on_a_fresh_trial(
    registry: Registry, verifier: Verifier, name: str
) -> None:
    now = [1000.0]
    service = Deployments(
        DeploymentStore(registry.database), registry, verify=verifier, clock=lambda: now[0]
    )
    service.create(name, "iris:1", by="a")
    canary = service.canary(name, "iris:2", 200, Guard(max_error_rate=0.1), by="a")
    tripped = service.apply(
        name,
        canary.spec.tripped(),
        by="guard",
        kind="guard",
        reason="errors 30% > 10%",
        expect_revision=canary.revision,
    )
    assert _weights(service, name) == {"iris:1": 100.0}
    with pytest.raises(AimassError) as stale:
        service.apply(
            name,
            canary.spec.promoted(),
            by="guard",
            kind="promote",
            expect_revision=canary.revision,
        )
    assert stale.value.code is ErrorCode.CONFLICT
    now[0] = 2000.0
    back = service.rollback(name, by="b")
    assert back.revision == tripped.revision + 1
    assert back.spec.canary is not None and back.spec.canary.since == 2000.0
    assert [e.reason for e in service.history(name) if e.kind == "guard"] == ["errors 30% > 10%"]


def test_shadows_on_and_off(service: Deployments, verifier: Verifier, name: str) -> None:
    service.create(name, "iris:1", by="a")
    service.shadow(name, "iris:2", 0.5, by="a")
    service.shadow(name, "iris:3", 1.0, by="a")
    assert verifier.seen == ["iris:1", "iris:2", "iris:3"]
    assert service.get(name).public()["shadows"][0] == {"ref": "iris:2", "sample": 0.5}
    with pytest.raises(AimassError) as not_one:
        service.shadow_off(name, "iris:1", by="a")
    assert not_one.value.code is ErrorCode.NOT_FOUND
    service.shadow_off(name, "iris:2", by="a")
    assert [s.ref for s in service.get(name).spec.shadows] == ["iris:3"]
    service.shadow_off(name, by="a")
    assert service.get(name).spec.shadows == ()
    with pytest.raises(AimassError) as target:
        service.shadow(name, "iris:1", 0.5, by="a")
    assert target.value.code is ErrorCode.INVALID_INPUT


def test_history_merges_the_moves_of_followed_aliases(
    service: Deployments, registry: Registry, name: str
) -> None:
    service.create(name, "iris@production", by="a")
    registry.set_alias("iris", "production", 2)
    registry.set_alias("iris", "staging", 3)  # not followed
    registry.set_alias("iris", "production", 1)
    history = service.history(name)
    assert [e.kind for e in history] == ["create", "alias", "alias"]
    assert history[1].public()["after"] == {"ref": "iris@production", "version": 2}
    assert history[1].id is None and history[1].reason == "iris@production moved from 1 to 2"
    assert [e.at for e in history] == sorted(e.at for e in history)


def test_delete_keeps_the_history_and_every_change_is_audited(
    service: Deployments, registry: Registry, name: str
) -> None:
    service.create(name, "iris:1", by="key-1")
    service.set(name, [Target(ref="iris:2", weight=1000)], by="key-2")
    service.delete(name, by="key-3")
    with pytest.raises(AimassError) as gone:
        service.get(name)
    assert gone.value.code is ErrorCode.NOT_FOUND
    assert [e.kind for e in service.history(name)] == ["create", "set", "delete"]
    audited = [e for e in AuditLog(registry.database).list(limit=1000) if e.target == name]
    assert [(e.actor, e.action, e.source) for e in reversed(audited)] == [
        ("key-1", "deployments.create", "tests"),
        ("key-2", "deployments.set", "tests"),
        ("key-3", "deployments.delete", "tests"),
    ]
    assert audited[1].detail["after"]["targets"] == [{"ref": "iris:2", "weight": 100.0}]
    with pytest.raises(AimassError) as never:
        service.history("d-never-was")
    assert never.value.code is ErrorCode.NOT_FOUND


def test_the_postgresql_path(tmp_path: Path, postgres_database: Callable[[], str]) -> None:
    registry = _open(
        Settings(
            home=tmp_path, registry=RegistrySettings(database_url=SecretStr(postgres_database()))
        )
    )
    verifier = Verifier()
    service = Deployments(DeploymentStore(registry.database), registry, verify=verifier)
    try:
        service.create("web", "iris@production", by="a")
        verifier.failing.add("iris:3")
        with pytest.raises(AimassError):
            service.set("web", [Target(ref="iris:3", weight=1000)], by="a")
        service.set("web", [Target(ref="iris:2", weight=1000)], by="a")
        service.rollback("web", by="b")
        assert _weights(service, "web") == {"iris@production": 100.0}
        assert [e.kind for e in service.history("web")] == ["create", "set", "rollback"]
        # The rollback brings iris:1 back, which may have been unloaded since: verified again.
        assert verifier.seen == ["iris:1", "iris:3", "iris:2", "iris:1"]
    finally:
        registry.close()
