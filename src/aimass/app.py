"""The composition root: settings in, the whole ASGI server out.

:func:`create_app` assembles, from what it is given and the settings for the
rest: the engine (:func:`~aimass.serving.factory.build_engine`), the gateway,
every protocol adapter's routes in one :class:`~aimass.http.routes.RouteTable`,
and the stack a request crosses::

    CORS (when origins are set) → gateway layer (keys, limits, deadline)
        → fast path (infer) → Starlette router → endpoint

There is no module-level app: the CLI (or a test) builds settings and a
registry and passes them in. The app's lifespan starts the engine (loading
the start-up models) and, on shutdown, closes it so that requests in flight
finish before the models are released. A start-up model that fails stops the
start (unless ``server.allow_missing``), reported to the ASGI server as its
one-line message rather than a traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aimass.codecs import RequestLimits
from aimass.codecs.schema import SCHEMAS as OIP_WIRE
from aimass.deployments.controller import DeploymentController
from aimass.deployments.router import DeploymentRouter
from aimass.deployments.service import Deployments
from aimass.deployments.store import DeploymentStore
from aimass.deployments.traffic import TrafficWatch
from aimass.errors import AimassError
from aimass.gateway import admin
from aimass.gateway.admin import AdminRoutes
from aimass.gateway.gateway import Gateway
from aimass.gateway.layer import GatewayLayer
from aimass.http.errors import routing_error_handler
from aimass.http.routes import FastPath, RouteTable
from aimass.lifecycle.runs import RunStore
from aimass.registry.records import VersionInfo
from aimass.registry.registry import Registry
from aimass.runtimes.model import LoadedModel
from aimass.server import deployschemas, openai, runs
from aimass.server.deployments import DeploymentRoutes, Status
from aimass.server.docs import ApiDocs
from aimass.server.identity import WorkerHeader
from aimass.server.oip import OipRoutes
from aimass.server.openai import OpenAIRoutes
from aimass.server.openapi import OpenApi
from aimass.server.runs import RunRoutes
from aimass.serving.engine import Engine
from aimass.serving.factory import build_engine
from aimass.serving.router import Router
from aimass.settings import Settings
from aimass.version import __version__

__all__ = ["ServedDeployments", "build_server_engine", "create_app", "route_table"]

# Response headers a browser page may read across origins.
_EXPOSED = (
    "retry-after",
    "x-request-id",
    "x-aimass-version",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-ratelimit-reason",
)


def route_table(
    settings: Settings,
    *,
    engine: Engine,
    registry: Registry,
    gateway: Gateway,
    deployment_status: Status | None = None,
) -> RouteTable:
    """Every route the server answers, from every adapter, with the schemas they describe.

    ``deployment_status`` tells how this server follows a deployment (its
    controller's); without one, a deployment's status reads null.
    """
    server_version = __version__
    limits = RequestLimits(settings.gateway.max_tensor_elements, settings.gateway.max_string_bytes)
    document = OpenApi(server_version, gateway)
    table = RouteTable(
        [
            *OipRoutes(engine, settings.server, server_version, limits).routes(),
            *OpenAIRoutes(engine, settings.server, limits).routes(),
            *RunRoutes(RunStore(registry.database)).routes(),
            *DeploymentRoutes.serving(
                engine, registry, settings.deployments, status=deployment_status
            ).routes(),
            *AdminRoutes(gateway).routes(),
            document.route(),
            *ApiDocs().routes(),
        ],
        {
            **OIP_WIRE,
            **openai.SCHEMAS,
            **runs.SCHEMAS,
            **deployschemas.SCHEMAS,
            **admin.SCHEMAS,
        },
    )
    document.bind(table)
    return table


@dataclass(frozen=True)
class ServedDeployments:
    """What an engine that serves deployments comes with: its router and its traffic's watch."""

    router: DeploymentRouter
    watch: TrafficWatch


def build_server_engine(
    registry: Registry,
    settings: Settings,
    *,
    preloaded: Sequence[tuple[VersionInfo, LoadedModel]] = (),
) -> tuple[Engine, ServedDeployments]:
    """The engine ``aimass serve`` runs, routing deployments by name, and what serves them.

    Pass both to :func:`create_app`, whose lifespan then runs the controller
    that keeps the router's tables on the stored deployments, and the watch
    of their traffic (statistics, shadows, canary guards), which observes
    the engine from its start.
    """
    routers: list[DeploymentRouter] = []

    def route(inner: Router) -> Router:
        routers.append(DeploymentRouter(inner))
        return routers[-1]

    watch = TrafficWatch(settings.deployments)
    engine = build_engine(
        registry, settings.serving, preloaded=preloaded, route=route, observer=watch.observer
    )
    return engine, ServedDeployments(routers[0], watch)


class _StartupFailure:
    """Reports a start-up that failed with an :class:`AimassError` as its message alone.

    Starlette reports a failed lifespan with the traceback, which the ASGI
    server logs; a model that does not exist is the user's mistake, not a bug.
    """

    def __init__(self, app: ASGIApp, failures: list[AimassError]) -> None:
        self.app = app
        self.failures = failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def report(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and self.failures:
                message = {**message, "message": self.failures[-1].message}
            await send(message)

        await self.app(scope, receive, report)


def create_app(
    settings: Settings,
    *,
    registry: Registry,
    engine: Engine | None = None,
    deployments: ServedDeployments | None = None,
    gateway: Gateway | None = None,
    preload: Sequence[str] | None = None,
    manage_engine: bool = True,
    worker_header: bool = False,
    allow_missing: bool | None = None,
) -> ASGIApp:
    """The aimass HTTP server: OIP REST, OpenAI-compatible endpoints, runs, admin, OpenAPI.

    ``engine`` and ``gateway`` default to the ones the settings describe over
    ``registry``; an engine made here serves deployments too, and so does one
    from :func:`build_server_engine` given with what it returned as
    ``deployments`` (an engine given without one serves models only). With
    ``manage_engine`` (the default) the lifespan starts the engine, loading
    ``preload`` (default: ``settings.server.models``), then the deployment
    controller, which converges before the server takes requests, and at
    shutdown stops them and closes the gateway; pass ``False`` when the
    caller owns them. A start-up model that does not resolve or load fails the lifespan
    unless ``allow_missing`` (default: ``settings.server.allow_missing``).
    ``worker_header`` names the answering process in every response.
    """
    if engine is None:
        engine, deployments = build_server_engine(registry, settings)
    controller = None
    if deployments is not None:
        store = DeploymentStore(registry.database, bucket_s=settings.deployments.stats_bucket_s)
        controller = DeploymentController(
            store, registry, engine, deployments.router, settings.deployments
        )
        watch = deployments.watch
        # The guard's trips and steps add no version, so it needs no verify.
        guard_service = Deployments(store, registry, source=watch.recorder.process)
    gateway = gateway or Gateway.from_settings(settings, registry.database)
    table = route_table(
        settings,
        engine=engine,
        registry=registry,
        gateway=gateway,
        deployment_status=None if controller is None else controller.status,
    )
    startup = list(settings.server.models if preload is None else preload)
    missing_ok = settings.server.allow_missing if allow_missing is None else allow_missing
    failures: list[AimassError] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not manage_engine:
            yield
            return
        gateway.start()
        try:
            await engine.start(startup, allow_missing=missing_ok)
        except AimassError as exc:
            failures.append(exc)
            await engine.close()
            await gateway.close()
            raise
        if deployments is not None and controller is not None:
            await controller.start()
            await watch.start(
                engine.infer, deployments.router.table, guard_service, store, registry
            )
        try:
            yield
        finally:
            if deployments is not None and controller is not None:
                await watch.stop()
                await controller.stop()
            await engine.close()
            await gateway.close()

    router = Starlette(
        routes=table.starlette_routes(),
        exception_handlers={HTTPException: routing_error_handler(table.protocol_for)},
        lifespan=lifespan,
    )
    app: ASGIApp = _StartupFailure(
        GatewayLayer(
            FastPath(router, table), gateway, table, max_body_bytes=settings.server.max_body_bytes
        ),
        failures,
    )
    origins = settings.gateway.cors_origins
    if origins:
        app = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=sorted({route.method for route in table.routes} | {"OPTIONS"}),
            allow_headers=["authorization", "x-api-key", "content-type", "x-request-id"],
            allow_credentials=settings.gateway.cors_allow_credentials,
            expose_headers=[*_EXPOSED],
            max_age=600,
        )
    if worker_header:
        app = WorkerHeader(app)
    return app
