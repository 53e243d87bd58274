"""The deployment router: installed tables answer a deployment's name, the rest falls through."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from aimass.contract.reference import ModelRef
from aimass.contract.request import Caller, InferRequest
from aimass.deployments.router import DeploymentRouter, RouteTable
from aimass.deployments.spec import DeploymentSpec, Shadow, Sticky, Target
from aimass.errors import AimassError, ErrorCode
from aimass.registry.records import ModelInfo, VersionInfo
from aimass.roles import Role

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _version(model: str, version: int) -> VersionInfo:
    # The router reads only a version's name and number.
    return VersionInfo.model_construct(model=model, version=version, status="ready")


class _Inner:
    """A wrapped router that answers every reference with version 1 of its name."""

    def __init__(self) -> None:
        self.forgotten: list[str] = []

    def cached(self, ref: ModelRef, request: InferRequest | None = None) -> VersionInfo | None:
        return _version(ref.name, ref.version or 1)

    async def resolve(
        self, ref: ModelRef, request: InferRequest | None = None, *, fresh: bool = False
    ) -> VersionInfo:
        return _version(ref.name, ref.version or 1)

    def forget(self, name: str) -> None:
        self.forgotten.append(name)

    async def models(self) -> list[ModelInfo]:
        return []

    async def model(self, name: str) -> ModelInfo:
        raise AimassError(ErrorCode.NOT_FOUND, name)

    async def versions(self, name: str) -> list[VersionInfo]:
        return [_version(name, 1)]

    def close(self) -> None:
        pass


V3, V4, V5 = _version("iris", 3), _version("iris", 4), _version("iris", 5)
RESOLVED = {"iris:3": V3, "iris@next": V4, "iris:5": V5}


def _table(
    targets: Sequence[tuple[str, int]], *, sticky: str | None = None, shadows: Sequence[str] = ()
) -> RouteTable:
    spec = DeploymentSpec(
        targets=tuple(Target(ref=ref, weight=w) for ref, w in targets),
        shadows=tuple(Shadow(ref=ref) for ref in shadows),
        sticky=None if sticky is None else Sticky.parse(sticky),
    ).checked()
    return RouteTable.build("prod", spec, {ref: RESOLVED[ref] for ref in spec.refs()})


def _request(headers: Sequence[tuple[bytes, bytes]] = (), caller: Caller | None = None) -> Any:
    return InferRequest("prod", {"x": np.zeros(1)}, headers=headers, caller=caller)


def _pick(router: DeploymentRouter, request: Any = None) -> str:
    info = router.cached(ModelRef("prod"), request)
    assert info is not None
    return info.ref


@pytest.fixture
def router() -> DeploymentRouter:
    return DeploymentRouter(_Inner())


async def test_a_deployment_routes_to_its_targets_and_other_names_fall_through(
    router: DeploymentRouter,
) -> None:
    router.install(_table([("iris:3", 500), ("iris@next", 500)]))
    assert {_pick(router, _request()) for _ in range(200)} == {"iris:3", "iris:4"}
    assert await router.resolve(ModelRef("prod"), _request()) in (V3, V4)
    # A version or alias of a name that is also a deployment's is not the deployment.
    assert router.cached(ModelRef("prod", 2)) == _version("prod", 2)
    assert router.cached(ModelRef("iris")) == _version("iris", 1)


async def test_metadata_answers_for_the_heaviest_target(router: DeploymentRouter) -> None:
    router.install(_table([("iris:3", 300), ("iris@next", 700)]))
    assert router.cached(ModelRef("prod")) == V4
    assert await router.resolve(ModelRef("prod")) == V4


def test_installing_replaces_the_table_and_removing_ends_the_deployment(
    router: DeploymentRouter,
) -> None:
    router.install(_table([("iris:3", 1000)]))
    router.install(_table([("iris:5", 1000)]))
    assert {_pick(router, _request()) for _ in range(50)} == {"iris:5"}
    assert set(router.tables()) == {"prod"}
    router.remove("prod")
    assert router.table("prod") is None
    assert router.cached(ModelRef("prod"), _request()) == _version("prod", 1)


@pytest.mark.parametrize("caller", [None, Caller("k1", Role.DEPLOYER), Caller("k2", Role.ADMIN)])
def test_a_deployer_may_pin_any_version_of_the_deployment_shadows_included(
    router: DeploymentRouter, caller: Caller | None
) -> None:
    router.install(_table([("iris:3", 1000)], shadows=["iris:5"]))
    for pin in (b"iris:5", b"iris:3"):
        request = _request([(b"x-aimass-route", pin)], caller)
        assert {_pick(router, request) for _ in range(20)} == {pin.decode()}


def test_a_request_sent_by_the_weights_names_its_deployment_and_a_pinned_one_does_not(
    router: DeploymentRouter,
) -> None:
    # What the deployment's statistics and shadows count: traffic, not someone debugging.
    router.install(_table([("iris:3", 1000)]))
    routed, pinned = _request(), _request([(b"x-aimass-route", b"iris:3")])
    router.cached(ModelRef("prod"), routed)
    router.cached(ModelRef("prod"), pinned)
    assert (routed.deployment, pinned.deployment) == ("prod", None)


def test_an_invoker_may_not_pin(router: DeploymentRouter) -> None:
    router.install(_table([("iris:3", 1000)], shadows=["iris:5"]))
    request = _request([(b"x-aimass-route", b"iris:5")], Caller("k", Role.INVOKER))
    with pytest.raises(AimassError) as raised:
        router.cached(ModelRef("prod"), request)
    assert raised.value.code is ErrorCode.PERMISSION_DENIED
    assert "deployer" in raised.value.message


def test_a_pin_outside_the_deployment_is_refused_naming_its_versions(
    router: DeploymentRouter,
) -> None:
    router.install(_table([("iris:3", 1000)]))
    with pytest.raises(AimassError) as raised:
        router.cached(ModelRef("prod"), _request([(b"x-aimass-route", b"iris:4")]))
    assert raised.value.code is ErrorCode.INVALID_INPUT
    assert "iris:3" in raised.value.message


def test_a_sticky_header_keeps_a_user_on_one_version(router: DeploymentRouter) -> None:
    router.install(_table([("iris:3", 500), ("iris@next", 500)], sticky="header:x-user-id"))
    answers = {
        user: {_pick(router, _request([(b"x-user-id", user.encode())])) for _ in range(20)}
        for user in (f"u{i}" for i in range(40))
    }
    assert all(len(seen) == 1 for seen in answers.values())
    assert set().union(*answers.values()) == {"iris:3", "iris:4"}
    # Without the header, the draw is random again.
    assert {_pick(router, _request()) for _ in range(200)} == {"iris:3", "iris:4"}


def test_a_sticky_key_keeps_an_api_key_on_one_version(router: DeploymentRouter) -> None:
    router.install(_table([("iris:3", 500), ("iris@next", 500)], sticky="key"))
    for key in ("alpha", "beta", "gamma", "delta"):
        caller = Caller(key, Role.INVOKER)
        assert len({_pick(router, _request(caller=caller)) for _ in range(20)}) == 1


async def test_the_rest_of_the_router_is_the_wrapped_one(router: DeploymentRouter) -> None:
    router.forget("iris")
    assert router.inner.forgotten == ["iris"]  # type: ignore[attr-defined]
    assert await router.versions("iris") == [_version("iris", 1)]
    assert await router.models() == []
    with pytest.raises(AimassError):
        await router.model("nope")


def test_a_table_lists_every_version_it_uses() -> None:
    table = _table([("iris:3", 900), ("iris@next", 100)], shadows=["iris:5"])
    assert table.versions == {("iris", 3), ("iris", 4), ("iris", 5)}
    assert table.shadows == ((V5, 1.0),)
