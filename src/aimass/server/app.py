"""``create_app``: the ASGI application, assembled from what it is given.

There is no module-level app: the CLI (or a test) builds settings, a registry
and an engine, and passes them in. The app's lifespan starts the engine
(preloading ``settings.server.models``) and, on shutdown, closes it so
requests in flight finish before the models are released.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from aimass.registry import Registry
from aimass.server.body import json_response
from aimass.server.errors import http_exception_handler
from aimass.server.oip import OipRoutes
from aimass.server.openai import OpenAIRoutes
from aimass.server.openapi import openapi_document
from aimass.server.runs import RunRoutes
from aimass.serving import Engine
from aimass.settings import Settings

if TYPE_CHECKING:
    from aimass.gateway.gateway import Gateway

__all__ = ["create_app"]


def _version() -> str:
    try:
        return version("aimass")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def create_app(
    settings: Settings,
    *,
    engine: Engine,
    registry: Registry,
    manage_engine: bool = True,
    gateway: Gateway | None = None,
) -> ASGIApp:
    """The aimass HTTP server: OIP REST, OpenAI-compatible embeddings and ``/openapi.json``.

    With ``manage_engine`` (the default) the app's lifespan starts ``engine``
    and closes it at shutdown; pass ``False`` when the caller owns both. A
    ``gateway`` puts keys, roles, rate limits, request limits and the admin
    API in front of everything, the infer fast path included.
    """
    server_version = _version()
    document = openapi_document(server_version)
    limits = gateway.limits if gateway is not None else None
    if gateway is not None:
        gateway.describe(document)

    async def openapi(request: Request) -> Response:
        return json_response(document)

    oip = OipRoutes(engine, registry, settings.server, server_version, limits=limits)
    routes = [
        *oip.routes(),
        *OpenAIRoutes(engine, registry, settings.server, limits=limits).routes(),
        Route("/openapi.json", openapi, methods=["GET"]),
        *RunRoutes(registry).routes(),
        *(gateway.routes() if gateway is not None else []),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not manage_engine:
            yield
            return
        await engine.start(settings.server.models)
        try:
            yield
        finally:
            await engine.close()
            if gateway is not None:
                await gateway.close()

    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_exception_handler},
        lifespan=lifespan,
    )
    fast = _InferFastPath(app, oip.infer)
    if gateway is None:
        return fast
    return gateway.wrap(fast, max_body_bytes=settings.server.max_body_bytes)


class _InferFastPath:
    """Sends ``POST /v2/models/{name}[/versions/{v}]/infer`` straight to its endpoint.

    Routing a request through Starlette's middleware stack and route table
    costs about as much as decoding a small tensor; the infer route is the
    one path where that shows in requests per second, so it skips them. Its
    endpoint is the same ASGI object the router mounts, so errors and
    responses are identical either way.
    """

    def __init__(self, app: Starlette, infer: ASGIApp) -> None:
        self.app = app
        self.infer = infer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            params = _infer_params(scope["path"])
            if params is not None:
                scope["app"] = self.app
                scope["path_params"] = params
                await self.infer(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _infer_params(path: str) -> dict[str, str] | None:
    if not (path.startswith("/v2/models/") and path.endswith("/infer")):
        return None
    parts = path[len("/v2/models/") : -len("/infer")].split("/")
    if len(parts) == 1 and parts[0]:
        return {"name": parts[0]}
    if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
        return {"name": parts[0], "version": parts[2]}
    return None
