"""The route table: every endpoint declared once, and everything about the URL space read from it.

Each protocol adapter declares its endpoints as :class:`Route` entries:
method, path, the least role it needs, the protocol its error bodies speak,
its parameters, body and answers, and how the gateway treats it (the model in
scope, auditing, filtering a listing for a scoped key). The
:class:`RouteTable` built from them is what routes requests
(:meth:`RouteTable.starlette_routes`, :class:`FastPath`), what the gateway
asks (:meth:`RouteTable.match`), what picks the error body of a request that
matches no route (:meth:`RouteTable.protocol_for`) and what
``/openapi.json`` describes (:mod:`aimass.server.openapi`). Parameters are
parsed from their declaration, so what the document promises is what the
server checks.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, compile_path
from starlette.routing import Route as StarletteRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from aimass.contract.reference import MAX_NUMBER
from aimass.errors import AimassError, ErrorCode
from aimass.http.errors import Protocol, failure_response, request_id
from aimass.roles import Role

__all__ = [
    "Answer",
    "Body",
    "Endpoint",
    "FastPath",
    "Listing",
    "Param",
    "Params",
    "Route",
    "RouteTable",
    "json_content",
]

Params = Mapping[str, Any]
"""A request's path and query parameters, parsed as their route declares them."""

Endpoint = Callable[[Request, Params], Awaitable[Response]]
"""An endpoint: the request and its parsed parameters in, a response out."""

Listing = Callable[[Any, Callable[[str], bool]], Any]
"""Keeps the entries of a listing's JSON answer whose model name passes the test."""

_DIGITS = re.compile(r"[0-9]+")


def json_content(schema: str, *, many: bool = False) -> dict[str, Any]:
    """A JSON body (or, with ``many``, a JSON list) of the component schema named ``schema``."""
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"application/json": {"type": "array", "items": ref} if many else ref}


@dataclass(frozen=True)
class Param:
    """One path, query or header parameter and the JSON schema its value must fit.

    Integers (``minimum``, ``maximum``) and strings (``enum``) are parsed from
    the schema; anything else is refused with INVALID_INPUT naming the
    parameter, or, with ``not_found``, NOT_FOUND with that message (formatted
    with the raw path parameters): a value that names nothing there can be.
    """

    name: str
    location: Literal["path", "query", "header"]
    schema: Mapping[str, Any]
    description: str = ""
    required: bool = False
    not_found: str | None = None

    @classmethod
    def integer(
        cls,
        name: str,
        location: Literal["path", "query", "header"] = "path",
        *,
        low: int = 0,
        high: int = MAX_NUMBER,
        description: str = "",
        not_found: str | None = None,
    ) -> Param:
        """A whole number from ``low`` to ``high``."""
        schema = {"type": "integer", "minimum": low, "maximum": high}
        required = location == "path"
        return cls(name, location, schema, description, required, not_found)

    @classmethod
    def string(
        cls,
        name: str,
        location: Literal["path", "query", "header"] = "path",
        *,
        choices: Sequence[str] = (),
        pattern: str | None = None,
        description: str = "",
    ) -> Param:
        """Any text (a path segment is never empty), one of ``choices``, or text of ``pattern``.

        The pattern describes what can exist (a model reference); a value
        outside it is answered by the endpoint, which finds nothing by it.
        """
        schema: dict[str, Any] = {"type": "string"}
        if choices:
            schema["enum"] = list(choices)
        elif pattern is not None:
            schema["pattern"] = pattern
        elif location == "path":
            schema["minLength"] = 1
        return cls(name, location, schema, description, required=location == "path")

    def parse(self, raw: str, path: Mapping[str, str] | None = None) -> Any:
        """The value ``raw`` stands for; INVALID_INPUT (or NOT_FOUND) if it does not fit."""
        schema = self.schema
        if schema.get("type") == "integer":
            low, high = schema["minimum"], schema["maximum"]
            if _DIGITS.fullmatch(raw) is None or not low <= int(raw) <= high:
                if self.not_found is not None:
                    raise AimassError(ErrorCode.NOT_FOUND, self.not_found.format_map(path or {}))
                raise AimassError(
                    ErrorCode.INVALID_INPUT,
                    f"{self.location} parameter {self.name} must be a whole number from "
                    f"{low} to {high}, not {raw[:40]!r}",
                    field=self.name,
                )
            return int(raw)
        choices = schema.get("enum")
        if choices is not None and raw not in choices:
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"{self.location} parameter {self.name} must be one of {', '.join(choices)}",
                field=self.name,
            )
        return raw

    def openapi(self) -> dict[str, Any]:
        """The parameter object of an OpenAPI operation."""
        described = {"name": self.name, "in": self.location, "required": self.required}
        if self.description:
            described["description"] = self.description
        return {**described, "schema": dict(self.schema)}


@dataclass(frozen=True)
class Body:
    """What a request body may be: a schema per media type."""

    content: Mapping[str, Mapping[str, Any]]
    required: bool = True


@dataclass(frozen=True)
class Answer:
    """A successful answer: its status, what it is, and a schema per media type."""

    status: int
    description: str
    content: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Route:
    """One endpoint, declared once.

    ``role`` is the least role a key needs (None: open to anyone);
    ``protocol`` the shape of its error bodies; ``errors`` what the endpoint
    itself may answer besides the errors every route can give. ``model`` names
    the path parameter holding the model a key's scope must cover, or
    ``model_in_body`` says the JSON body's ``model`` field does; ``management``
    routes are audited; ``listing`` filters the answer for a scoped key.
    ``asgi`` endpoints are plain ASGI apps that parse their own parameters
    (the hot path); ``fast`` ones are reached by :class:`FastPath` before the
    router.
    """

    method: str
    path: str
    name: str
    summary: str
    endpoint: Endpoint | ASGIApp
    role: Role | None
    protocol: Protocol
    params: tuple[Param, ...] = ()
    body: Body | None = None
    answers: tuple[Answer, ...] = ()
    errors: tuple[ErrorCode, ...] = ()
    model: str | None = None
    model_in_body: bool = False
    management: bool = False
    listing: Listing | None = None
    asgi: bool = False
    fast: bool = False
    _path_params: tuple[Param, ...] = field(init=False, repr=False, compare=False)
    _query_params: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_path_params", tuple(p for p in self.params if p.location == "path")
        )
        object.__setattr__(
            self, "_query_params", {p.name: p for p in self.params if p.location == "query"}
        )

    def parse(self, request: Request) -> dict[str, Any]:
        """The request's path and query parameters, parsed; unknown query parameters refused."""
        values: dict[str, Any] = {}
        path = request.path_params
        for param in self._path_params:
            values[param.name] = param.parse(path[param.name], path)
        query = request.query_params
        unknown = sorted(set(query) - set(self._query_params))
        if unknown:
            known = ", ".join(self._query_params) or "none"
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"unknown query parameter(s) {unknown}; this endpoint takes: {known}",
                field=unknown[0],
            )
        for name, param in self._query_params.items():
            raw = query.get(name)
            if raw is not None:
                values[name] = param.parse(raw)
        return values

    def handler(self) -> ASGIApp:
        """The endpoint as an ASGI app that answers every failure in this route's protocol."""
        if self.asgi:
            return cast(ASGIApp, self.endpoint)
        endpoint = cast(Endpoint, self.endpoint)

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            request = Request(scope, receive)
            try:
                response = await endpoint(request, self.parse(request))
            except ClientDisconnect:
                response = Response(status_code=499)
            except Exception as exc:
                response = failure_response(exc, self.protocol, request_id(scope["headers"]))
            await response(scope, receive, send)

        return app


class _Methods:
    """The routes of one path, dispatched by method (HEAD is answered as GET)."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self._apps = {route.method: route.handler() for route in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        await self._apps["GET" if method == "HEAD" else method](scope, receive, send)


@dataclass(frozen=True)
class _Path:
    template: str
    pattern: re.Pattern[str]
    routes: dict[str, Route]
    strictest: Route


class RouteTable:
    """Every route of a server and the component schemas their descriptions refer to."""

    def __init__(self, routes: Sequence[Route], schemas: Mapping[str, Any]) -> None:
        self.routes = tuple(routes)
        self.schemas = dict(schemas)
        by_path: dict[str, dict[str, Route]] = {}
        for route in self.routes:
            methods = by_path.setdefault(route.path, {})
            if route.method in methods:
                raise ValueError(f"{route.method} {route.path} is declared twice")
            methods[route.method] = route
        self._paths = [
            _Path(path, compile_path(path)[0], methods, max(methods.values(), key=_rank))
            for path, methods in by_path.items()
        ]
        self._literal = {p.template: p for p in self._paths if "{" not in p.template}
        self._protocols = _protocols_by_segment(self.routes)

    def starlette_routes(self) -> list[BaseRoute]:
        """One Starlette route per path: its methods, and 405 with ``Allow`` for the rest."""
        return [
            StarletteRoute(
                path.template, _Methods(list(path.routes.values())), methods=list(path.routes)
            )
            for path in self._paths
        ]

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route ``method path`` reaches and its path parameters; None if no path matches.

        A path that matches with another method gets the strictest of its
        routes, so a wrong method never opens what a right one closes.
        """
        found = self._literal.get(path)
        params: dict[str, str] = {}
        if found is None:
            for candidate in self._paths:
                hit = candidate.pattern.match(path)
                if hit is not None:
                    found, params = candidate, hit.groupdict()
                    break
            else:
                return None
        route = found.routes.get("GET" if method == "HEAD" else method, found.strictest)
        return route, params

    def protocol_for(self, path: str) -> Protocol:
        """The protocol of the route a path reaches; else that of its first segment's routes."""
        matched = self.match("GET", path)
        if matched is not None:
            return matched[0].protocol
        return self._protocols.get(path.split("/", 2)[1] if path.count("/") else "", Protocol.OIP)


_STRICTNESS = (None, Role.INVOKER, Role.DEPLOYER, Role.ADMIN)


def _rank(route: Route) -> int:
    return _STRICTNESS.index(route.role)


def _protocols_by_segment(routes: Sequence[Route]) -> dict[str, Protocol]:
    """The protocol of each first path segment whose routes all speak one."""
    seen: dict[str, set[Protocol]] = {}
    for route in routes:
        seen.setdefault(route.path.split("/", 2)[1], set()).add(route.protocol)
    return {segment: next(iter(found)) for segment, found in seen.items() if len(found) == 1}


class FastPath:
    """Sends requests for the ``fast`` routes straight to their endpoints, past the router.

    Routing a request through Starlette's middleware stack and route table
    costs about as much as decoding a small tensor; the infer route is the
    one path where that shows in requests per second, so it skips them. Its
    endpoint is the same ASGI app the router mounts, so errors and responses
    are identical either way.
    """

    def __init__(self, app: ASGIApp, table: RouteTable) -> None:
        self.app = app
        self._routes: dict[str, list[tuple[re.Pattern[str], ASGIApp]]] = {}
        for route in table.routes:
            if route.fast:
                pattern = compile_path(route.path)[0]
                self._routes.setdefault(route.method, []).append((pattern, route.handler()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a fast route's request, or pass any other to the app."""
        if scope["type"] == "http":
            candidates = self._routes.get(scope["method"])
            if candidates is not None:
                path = scope["path"]
                for pattern, endpoint in candidates:
                    hit = pattern.match(path)
                    if hit is not None:
                        scope["app"] = self.app
                        scope["path_params"] = hit.groupdict()
                        await endpoint(scope, receive, send)
                        return
        await self.app(scope, receive, send)
