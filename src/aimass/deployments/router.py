"""The deployment router: a deployment's name routed to one of its versions, with no query.

:class:`DeploymentRouter` is the engine's :class:`~aimass.serving.router.Router`
in front of the registry's. A reference that is a bare deployment name is
answered from the :class:`RouteTable` the controller installed for it: a
pinned version (``x-aimass-route: iris:3``, for a caller allowed
:attr:`~aimass.roles.Role.DEPLOYER`), else the sticky key's target, else a
weighted draw. No database, no await: the table holds resolved versions, and
installing a new one is one dictionary assignment, so a request sees either
the old table or the new one, never a mix. Every other reference (a model, a
version, an alias) goes to the wrapped router.

Metadata and readiness of a deployment (a reference with no request) answer
for its heaviest target. The model listing stays the registry's: a
deployment is reached by name like a model, but it is listed, with its
targets and weights, by ``/v1/deployments``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aimass.contract.reference import ModelRef
from aimass.contract.request import InferRequest
from aimass.deployments.routing import Split
from aimass.deployments.spec import DeploymentSpec
from aimass.errors import AimassError, ErrorCode
from aimass.registry.records import ModelInfo, VersionInfo
from aimass.roles import Role
from aimass.serving.router import Router

__all__ = ["ROUTE_HEADER", "DeploymentRouter", "RouteTable"]

ROUTE_HEADER = b"x-aimass-route"
"""The request header that pins a deployment's request to one of its versions."""


@dataclass(frozen=True)
class RouteTable:
    """One deployment's routing, resolved: what its requests go to, chosen without a query.

    ``resolved`` maps each reference the spec names (targets and shadows) to
    the version it meant when the table was built; ``shadows`` are the
    shadow versions with their sample. ``pins`` are what ``x-aimass-route``
    may name: each version as ``model:version`` and each reference as the
    spec writes it.
    """

    name: str
    spec: DeploymentSpec
    resolved: Mapping[str, VersionInfo]
    split: Split[VersionInfo] = field(repr=False)
    heaviest: VersionInfo
    shadows: tuple[tuple[VersionInfo, float], ...]
    pins: Mapping[bytes, VersionInfo] = field(repr=False)
    sticky_header: bytes | None = None
    sticky_key: bool = False

    @classmethod
    def build(
        cls, name: str, spec: DeploymentSpec, resolved: Mapping[str, VersionInfo]
    ) -> RouteTable:
        """The table of ``spec`` whose references resolved to ``resolved`` (one for each)."""
        targets = [t for t in spec.targets if t.weight > 0]
        split = Split([(resolved[t.ref], t.weight, t.ref) for t in targets])
        heaviest = resolved[max(targets, key=lambda t: t.weight).ref]
        pins: dict[bytes, VersionInfo] = {}
        for ref in sorted(spec.refs()):
            info = resolved[ref]
            pins[ref.encode()] = pins[info.ref.encode()] = info
        shadows = tuple((resolved[s.ref], s.sample) for s in spec.shadows)
        sticky = spec.sticky
        header = sticky.header if sticky is not None and sticky.kind == "header" else None
        return cls(
            name,
            spec,
            dict(resolved),
            split,
            heaviest,
            shadows,
            pins,
            sticky_header=None if header is None else header.encode(),
            sticky_key=sticky is not None and sticky.kind == "key",
        )

    @property
    def versions(self) -> set[tuple[str, int]]:
        """Every ``(model, version)`` the deployment uses, targets and shadows."""
        return {(info.model, info.version) for info in self.resolved.values()}

    def route(self, request: InferRequest | None) -> VersionInfo:
        """The version ``request`` goes to (the heaviest target for no request)."""
        if request is None:
            return self.heaviest
        # dict() of the header pairs runs in C; a Python loop costs more per request.
        found = dict(request.headers)
        pin = found.get(ROUTE_HEADER)
        if pin is not None:
            return self._pinned(pin, request)
        request.deployment = self.name
        if self.sticky_header is not None:
            key = found.get(self.sticky_header)
            if key is not None:
                return self.split.pick_for(key)
        if self.sticky_key and request.caller is not None:
            return self.split.pick_for(request.caller.key_id.encode())
        return self.split.pick()

    def _pinned(self, pin: bytes, request: InferRequest) -> VersionInfo:
        caller = request.caller
        if caller is not None and not caller.role.allows(Role.DEPLOYER):
            raise AimassError(
                ErrorCode.PERMISSION_DENIED,
                f"pinning a version with {ROUTE_HEADER.decode()} needs the deployer role",
                field=ROUTE_HEADER.decode(),
            )
        info = self.pins.get(pin.strip())
        if info is None:
            known = ", ".join(sorted({v.ref for v in self.resolved.values()}))
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"{ROUTE_HEADER.decode()} {pin.decode('latin-1')[:80]!r} is not a version of "
                f"deployment '{self.name}' (it has {known})",
                field=ROUTE_HEADER.decode(),
            )
        return info


class DeploymentRouter:
    """Deployments from installed tables, the rest from ``inner`` (see the module docstring)."""

    def __init__(self, inner: Router) -> None:
        self.inner = inner
        # Keyed by the bare reference the engine parses a deployment's name into,
        # and by name for the shadow tap, which looks one up per answered request.
        self._tables: dict[ModelRef, RouteTable] = {}
        self._named: dict[str, RouteTable] = {}

    def install(self, table: RouteTable) -> None:
        """Route the deployment ``table.name`` by ``table`` from the next request on."""
        self._tables[ModelRef(table.name)] = self._named[table.name] = table

    def remove(self, name: str) -> None:
        """Stop routing deployment ``name``: its name is a plain reference again."""
        self._tables.pop(ModelRef(name), None)
        self._named.pop(name, None)

    def table(self, name: str) -> RouteTable | None:
        """The table deployment ``name`` routes by now, if it has one."""
        return self._named.get(name)

    def tables(self) -> dict[str, RouteTable]:
        """Every installed table, by deployment name."""
        return dict(self._named)

    def cached(self, ref: ModelRef, request: InferRequest | None = None) -> VersionInfo | None:
        """A deployment's chosen version; else what the wrapped router knows now."""
        table = self._tables.get(ref)
        if table is not None:
            return table.route(request)
        return self.inner.cached(ref, request)

    async def resolve(
        self, ref: ModelRef, request: InferRequest | None = None, *, fresh: bool = False
    ) -> VersionInfo:
        """A deployment's chosen version; else the wrapped router's answer."""
        table = self._tables.get(ref)
        if table is not None:
            return table.route(request)
        return await self.inner.resolve(ref, request, fresh=fresh)

    def forget(self, name: str) -> None:
        """Drop what the wrapped router knows about ``name`` (a table stays until replaced)."""
        self.inner.forget(name)

    async def models(self) -> list[ModelInfo]:
        """The registry's models (deployments are listed by ``/v1/deployments``)."""
        return await self.inner.models()

    async def model(self, name: str) -> ModelInfo:
        """One registered model."""
        return await self.inner.model(name)

    async def versions(self, name: str) -> list[VersionInfo]:
        """A model's ready versions."""
        return await self.inner.versions(name)

    def close(self) -> None:
        """Close the wrapped router."""
        self.inner.close()
