"""``/v1/deployments``: deployments over HTTP, for keys with the deployer role.

``GET``/``POST /v1/deployments`` list and create; ``GET``/``DELETE
/v1/deployments/{name}`` show (with what every server measured per version
and this server's own convergence) and delete; ``POST
/v1/deployments/{name}/set|canary|promote|rollback|shadow`` change;
``GET /v1/deployments/{name}/history`` is every change. Bodies are checked
field by field (a wrong one is a 400 naming it), then handed to the same
:class:`~aimass.deployments.manager.DeploymentManager` the CLI and the SDK
use, acting as the caller's key. Each version a change adds is loaded and
warmed in this server's engine first; one that cannot serve is a 409 and
the deployment stays as it was. Errors use the ``/v1`` body shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from aimass.deployments.manager import SHOW_WINDOW_S, DeploymentManager
from aimass.deployments.service import Deployments, Verify
from aimass.deployments.spec import Guard
from aimass.deployments.store import DeploymentStore
from aimass.deployments.verify import in_engine
from aimass.errors import AimassError, ErrorCode
from aimass.http.body import json_response, read_json_object
from aimass.http.caller import caller_of
from aimass.http.errors import Protocol
from aimass.http.routes import Answer, Body, Param, Params, Route, json_content
from aimass.registry.registry import Registry
from aimass.roles import Role
from aimass.server.deployschemas import NAME, SCHEMAS
from aimass.serving.engine import Engine
from aimass.settings import DeploymentSettings

__all__ = ["SCHEMAS", "DeploymentRoutes", "Status"]

Status = Callable[[str], dict[str, Any]]
"""This server's convergence on one deployment (the controller's ``status(name)``)."""

_MAX_BODY = 64 * 1024
_M = TypeVar("_M", bound=BaseModel)


class _Body(BaseModel):
    # Strict: JSON's true is not 1, and "10" is not a number.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _Create(_Body):
    name: str
    ref: str
    sticky: str | None = None


class _Weight(_Body):
    ref: str
    weight: float


class _Set(_Body):
    targets: list[_Weight] = Field(min_length=1)


class _Progression(_Body):
    step: float
    interval_s: float
    max_weight: float | None = None


class _Canary(_Body):
    ref: str
    weight: float
    guard: Guard = Field(default_factory=Guard)
    progression: _Progression | None = None


class _Shadow(_Body):
    ref: str | None = None
    sample: float = 1.0
    off: bool = False


async def _body(request: Request, model: type[_M]) -> _M:
    """The request's JSON body as ``model``; INVALID_INPUT naming the first field at fault."""
    document = await read_json_object(request, _MAX_BODY)
    try:
        return model.model_validate(document, strict=True)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        where = f"'{field}'" if field else "the body"
        raise AimassError(
            ErrorCode.INVALID_INPUT, f"{where}: {error['msg']}", field=field or None
        ) from None


class DeploymentRoutes:
    """The deployment endpoints, over one service and this server's convergence status."""

    def __init__(
        self,
        store: DeploymentStore,
        registry: Registry,
        *,
        verify: Verify | None = None,
        status: Status | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.verify = verify
        self.status = status

    @classmethod
    def serving(
        cls,
        engine: Engine,
        registry: Registry,
        settings: DeploymentSettings,
        *,
        status: Status | None = None,
    ) -> DeploymentRoutes:
        """The routes of a server whose changes load and warm each new version in ``engine``."""
        store = DeploymentStore(registry.database, bucket_s=settings.stats_bucket_s)
        return cls(store, registry, verify=in_engine(engine), status=status)

    def routes(self) -> list[Route]:
        """The deployment endpoints, declared: changes and reads alike need the deployer role."""
        common: dict[str, Any] = {"role": Role.DEPLOYER, "protocol": Protocol.OPENAI}
        one = (ErrorCode.NOT_FOUND,)
        changed = Answer(200, "the deployment as it is now", json_content("Deployment"))

        def change(action: str, summary: str, endpoint: Any, body: str | None) -> Route:
            return Route(
                "POST",
                f"/v1/deployments/{{name}}/{action}",
                f"{action}Deployment",
                summary,
                endpoint,
                params=(NAME,),
                body=None if body is None else Body(json_content(body)),
                answers=(changed,),
                errors=(*one, ErrorCode.CONFLICT),
                **common,
            )

        return [
            Route(
                "GET",
                "/v1/deployments",
                "listDeployments",
                "Every deployment",
                self.list,
                answers=(Answer(200, "deployments", json_content("DeploymentList")),),
                **common,
            ),
            Route(
                "POST",
                "/v1/deployments",
                "createDeployment",
                "Create a deployment sending all its traffic to one version",
                self.create,
                body=Body(json_content("DeploymentCreate")),
                answers=(Answer(201, "created", json_content("Deployment")),),
                errors=(*one, ErrorCode.ALREADY_EXISTS, ErrorCode.CONFLICT),
                **common,
            ),
            Route(
                "GET",
                "/v1/deployments/{name}",
                "getDeployment",
                "One deployment, what each of its versions served, this server's status",
                self.show,
                params=(
                    NAME,
                    Param.integer(
                        "window_s",
                        "query",
                        low=1,
                        high=7 * 86400,
                        description=f"count requests over this many seconds (default "
                        f"{SHOW_WINDOW_S:g})",
                    ),
                ),
                answers=(Answer(200, "the deployment", json_content("DeploymentShown")),),
                errors=one,
                **common,
            ),
            Route(
                "DELETE",
                "/v1/deployments/{name}",
                "deleteDeployment",
                "Delete a deployment (its history stays)",
                self.delete,
                params=(NAME,),
                answers=(Answer(200, "the deployment as it was", json_content("Deployment")),),
                errors=one,
                **common,
            ),
            change("set", "Set the traffic split", self.set, "DeploymentSplit"),
            change("canary", "Put a version on guarded trial", self.canary, "DeploymentCanary"),
            change("promote", "Send all the traffic to the canary", self.promote, None),
            change("rollback", "Undo the newest change not undone yet", self.rollback, None),
            change("shadow", "Add or remove a shadow version", self.shadow, "DeploymentShadow"),
            Route(
                "GET",
                "/v1/deployments/{name}/history",
                "deploymentHistory",
                "Every change of a deployment, oldest first, with the alias moves it followed",
                self.history,
                params=(NAME,),
                answers=(Answer(200, "the changes", json_content("DeploymentHistory")),),
                errors=one,
                **common,
            ),
        ]

    def _manager(self, request: Request) -> DeploymentManager:
        caller = caller_of(request.scope)
        host = request.client.host if request.client else ""
        # An open server (no keys yet) has no key to name: the audit log says where it came from.
        by = caller.key_id if caller is not None else "anonymous"
        service = Deployments(self.store, self.registry, verify=self.verify, source=host)
        return DeploymentManager(service, self.store, by=by)

    async def list(self, request: Request, params: Params) -> Response:
        """``GET /v1/deployments``."""
        found = await run_in_threadpool(self._manager(request).list)
        return json_response({"deployments": [d.public() for d in found]})

    async def create(self, request: Request, params: Params) -> Response:
        """``POST /v1/deployments``: ``{"name", "ref", "sticky"}``."""
        body = await _body(request, _Create)
        manager = self._manager(request)
        made = await run_in_threadpool(
            lambda: manager.create(body.name, body.ref, sticky=body.sticky)
        )
        return json_response(made.public(), 201)

    async def show(self, request: Request, params: Params) -> Response:
        """``GET /v1/deployments/{name}?window_s=``: the spec, per-version stats, status."""
        manager = self._manager(request)
        window = float(params.get("window_s", SHOW_WINDOW_S))
        shown = await run_in_threadpool(manager.show, params["name"], window)
        shown["status"] = None if self.status is None else self.status(params["name"])
        return json_response(shown)

    async def delete(self, request: Request, params: Params) -> Response:
        """``DELETE /v1/deployments/{name}``."""
        removed = await run_in_threadpool(self._manager(request).delete, params["name"])
        return json_response(removed.public())

    async def set(self, request: Request, params: Params) -> Response:
        """``POST /v1/deployments/{name}/set``: ``{"targets": [{"ref", "weight"}]}``, percent."""
        body = await _body(request, _Set)
        split: dict[str, float] = {}
        for target in body.targets:
            if target.ref in split:
                raise AimassError(
                    ErrorCode.INVALID_INPUT, f"{target.ref} is given twice", field="targets"
                )
            split[target.ref] = target.weight
        manager = self._manager(request)
        changed = await run_in_threadpool(manager.set, params["name"], split)
        return json_response(changed.public())

    async def canary(self, request: Request, params: Params) -> Response:
        """``POST /v1/deployments/{name}/canary``: ``{"ref", "weight", "guard", "progression"}``."""
        body = await _body(request, _Canary)
        manager = self._manager(request)
        guard, steps = body.guard, body.progression
        changed = await run_in_threadpool(
            lambda: manager.canary(
                params["name"],
                body.ref,
                body.weight,
                max_error_rate=guard.max_error_rate,
                max_p99_ratio=guard.max_p99_ratio,
                window_s=guard.window_s,
                min_requests=guard.min_requests,
                step=None if steps is None else steps.step,
                interval_s=None if steps is None else steps.interval_s,
                max_weight=None if steps is None else steps.max_weight,
            )
        )
        return json_response(changed.public())

    async def promote(self, request: Request, params: Params) -> Response:
        """``POST /v1/deployments/{name}/promote``."""
        changed = await run_in_threadpool(self._manager(request).promote, params["name"])
        return json_response(changed.public())

    async def rollback(self, request: Request, params: Params) -> Response:
        """``POST /v1/deployments/{name}/rollback``."""
        changed = await run_in_threadpool(self._manager(request).rollback, params["name"])
        return json_response(changed.public())

    async def shadow(self, request: Request, params: Params) -> Response:
        """``POST /v1/deployments/{name}/shadow``: ``{"ref", "sample"}``, or ``{"off": true}``."""
        body = await _body(request, _Shadow)
        manager = self._manager(request)
        name = params["name"]
        if body.off:
            changed = await run_in_threadpool(manager.shadow_off, name, body.ref)
        elif body.ref is None:
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                "'ref' is required, unless 'off' is true to stop shadowing",
                field="ref",
            )
        else:
            changed = await run_in_threadpool(manager.shadow, name, body.ref, body.sample)
        return json_response(changed.public())

    async def history(self, request: Request, params: Params) -> Response:
        """``GET /v1/deployments/{name}/history``."""
        events = await run_in_threadpool(self._manager(request).history, params["name"])
        return json_response({"events": events})
