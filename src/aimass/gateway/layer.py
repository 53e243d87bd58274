"""The gateway as an ASGI layer around the whole app (the infer fast path included).

Per request: find its route in the route table, authenticate the key, check
its role and model scope, take from its rate limit and quota, then call the
app under the request deadline, adding ``X-RateLimit-*`` headers, and record
management actions in the audit log. While no key is required
(``enabled="auto"`` with no keys, or ``"off"``) only the deadline applies: a
clock read and a dict insert and delete (:mod:`aimass.http.deadline`), about
a microsecond. The deadline runs in this layer rather than one of its own
because every ASGI layer a request crosses costs about a microsecond.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aimass.contract.request import Caller
from aimass.errors import AimassError, ErrorCode
from aimass.gateway.gateway import Gateway, key_from_headers
from aimass.gateway.keys import ApiKey
from aimass.gateway.ratelimit import Decision
from aimass.gateway.scope import in_scope
from aimass.http.body import read_body
from aimass.http.caller import CALLER
from aimass.http.deadline import Deadlines
from aimass.http.errors import error_response, request_id
from aimass.http.routes import Listing, Route, RouteTable
from aimass.roles import Role

__all__ = ["GatewayLayer", "required"]

logger = logging.getLogger("aimass.gateway")

_REFUSALS = {
    "rate": "rate limit exceeded for this API key: slow down",
    "quota": "quota exceeded for this API key: no more requests until it renews",
}
"""The 429's message, by the limit that ran out (also its ``X-RateLimit-Reason``)."""


def _source(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}" if client else ""


class GatewayLayer:
    """Admits each HTTP request through a :class:`Gateway` before ``app`` sees it."""

    def __init__(
        self, app: ASGIApp, gateway: Gateway, routes: RouteTable, *, max_body_bytes: int
    ) -> None:
        self.app = app
        self.gateway = gateway
        self.routes = routes
        self.max_body_bytes = max_body_bytes
        self.timeout = gateway.settings.request_timeout_s
        self.deadlines = Deadlines(self.timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit (or refuse) one request, then run it under the deadline."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key: ApiKey | None = None
        management = False
        gateway = self.gateway
        if not gateway.admits_all():
            # The key table is re-read every few seconds; between reads, an
            # open gateway costs no await.
            table = gateway.cached_table()
            if table is None:
                table = await gateway.table()
            if gateway.enforcing():
                method = scope["method"]
                role, route, params = required(self.routes, method, scope["path"])
                if role is not None:
                    management = _audited(route, method)
                    admitted = await self._admit(
                        scope, receive, send, table, role, route, params, management
                    )
                    if admitted is None:
                        return  # refused, and answered
                    key, scope, receive, send = admitted
        # The deadline is run here rather than in a helper coroutine: this is
        # every request's path, and each coroutine frame costs about a microsecond.
        watched = _Watched(send)
        deadlines = self.deadlines
        task = deadlines.start()
        try:
            await self.app(scope, receive, watched)
        except asyncio.CancelledError:
            if not deadlines.finish(task):
                raise  # the client left or the server is stopping
            status: int | None = await self._late(scope, receive, send, watched)
        except BaseException:
            deadlines.finish(task)  # a request that failed must not stay on the clock
            raise
        else:
            deadlines.finish(task)
            status = watched.status
        if management:
            assert key is not None
            await self._audit(key, scope, 500 if status is None else status)

    async def _admit(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        table: dict[str, ApiKey],
        role: Role,
        route: Route | None,
        params: dict[str, str],
        management: bool,
    ) -> tuple[ApiKey, Scope, Receive, Send] | None:
        """The caller's key and the scope, receive and send to run with.

        None once refused and answered (and, for a ``management`` request
        from a known key, audited).
        """
        gateway = self.gateway
        key: ApiKey | None = None
        decision: Decision | None = None
        try:
            key = await gateway.authenticate(table, key_from_headers(scope["headers"]))
            gateway.authorize(key, role)
            model = None if route is None or route.model is None else params.get(route.model)
            if route is not None and route.model_in_body and key.models:
                model, scope, receive = await self._body_model(scope, receive)
            if model is not None and not in_scope(key.models, model):
                raise AimassError(
                    ErrorCode.PERMISSION_DENIED, f"this API key may not use model '{model}'"
                )
            decision = await gateway.admit(key, model)
            if decision is not None and not decision.allowed:
                raise AimassError(
                    ErrorCode.RATE_LIMITED,
                    _REFUSALS[decision.reason],
                    retry_after=decision.headers()["retry-after"],
                    reason=decision.reason,
                )
        except AimassError as exc:
            await self._refuse(exc, scope, receive, send, decision)
            if key is not None and management:
                await self._audit(key, scope, exc.spec.http_status)
            return None
        scope[CALLER] = Caller(key.id, key.role)
        if decision is not None and decision.enforced:
            send = _with_headers(send, decision.headers())
        listing = None if route is None else route.listing
        if key.models and listing is not None:
            scope, send = _filtered_listing(scope, send, key.models, listing)
        return key, scope, receive, send

    async def _refuse(
        self,
        exc: AimassError,
        scope: Scope,
        receive: Receive,
        send: Send,
        decision: Decision | None,
    ) -> None:
        protocol = self.routes.protocol_for(scope["path"])
        response = error_response(exc, protocol, request_id(scope["headers"]))
        if exc.code is ErrorCode.UNAUTHENTICATED:
            response.headers["www-authenticate"] = 'Bearer realm="aimass"'
        if decision is not None and decision.enforced:
            response.headers.update(decision.headers())
        await response(scope, receive, send)

    async def _audit(self, key: ApiKey, scope: Scope, status: int) -> None:
        await self.gateway.record(
            actor=key.id,
            action="request",
            target=f"{scope['method']} {scope['path']}",
            source=_source(scope),
            status=status,
        )

    async def _body_model(self, scope: Scope, receive: Receive) -> tuple[Any, Scope, Receive]:
        """The ``model`` a JSON body names, and a scope and receive that replay the body."""
        body = await read_body(Request(scope, receive), self.max_body_bytes)
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            document = None
        model = document.get("model") if isinstance(document, dict) else None
        headers = [
            (name, value)
            for name, value in scope["headers"]
            if name not in (b"content-encoding", b"content-length")
        ]
        headers.append((b"content-length", str(len(body)).encode()))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        # A model that is not a string is the endpoint's 400 to give, not a scope question.
        return (model if isinstance(model, str) else None), {**scope, "headers": headers}, replay

    async def _late(self, scope: Scope, receive: Receive, send: Send, watched: _Watched) -> int:
        """Answer 504 for a request its deadline cancelled; the status sent."""
        if watched.status is not None:
            # Half a response is out: all that is left is to cut the connection.
            logger.warning("%s %s passed its deadline mid-response", scope["method"], scope["path"])
            return watched.status
        error = AimassError(ErrorCode.TIMEOUT, f"the request took longer than {self.timeout:g}s")
        protocol = self.routes.protocol_for(scope["path"])
        response = error_response(error, protocol, request_id(scope["headers"]))
        await response(scope, receive, send)
        return response.status_code


def required(
    routes: RouteTable, method: str, path: str
) -> tuple[Role | None, Route | None, dict[str, str]]:
    """The role ``method path`` needs (None: open), its route and its path parameters.

    A path no route declares needs admin: an endpoint is never open by omission.
    """
    matched = routes.match(method, path)
    if matched is None:
        return Role.ADMIN, None, {}
    route, params = matched
    return route.role, route, params


def _audited(route: Route | None, method: str) -> bool:
    """Whether a request is a management action: its route says, else any change is one."""
    return route.management if route is not None else method not in ("GET", "HEAD")


class _Watched:
    """``send``, noting the status of the response as it starts (None until then).

    A plain callable that returns ``send``'s awaitable, so watching adds no
    coroutine to each message.
    """

    __slots__ = ("send", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status: int | None = None

    def __call__(self, message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        return self.send(message)


def _with_headers(send: Send, headers: dict[str, str]) -> Send:
    extra = [(name.encode(), value.encode()) for name, value in headers.items()]

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sending


def _filtered_listing(
    scope: Scope, send: Send, patterns: tuple[str, ...], listing: Listing
) -> tuple[Scope, Send]:
    """A model listing, for a scoped key, shows only the models in its scope."""
    headers = [(n, v) for n, v in scope["headers"] if n != b"accept-encoding"]
    start: Message = {}
    chunks: list[bytes] = []

    async def sending(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(chunks)
        if start.get("status") == 200:
            document = listing(orjson.loads(body), lambda name: in_scope(patterns, name))
            body = orjson.dumps(document)
        kept = [(n, v) for n, v in start.get("headers", []) if n != b"content-length"]
        await send({**start, "headers": [*kept, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return {**scope, "headers": headers}, sending
