"""The gateway as an ASGI layer around the whole app (the infer fast path included).

Per request: classify the path, authenticate the key, check its role and
model scope, take from its rate limit and quota, then call the app under the
request deadline, adding ``X-RateLimit-*`` headers, and record management
actions in the audit log. While no key is required (``enabled="auto"`` with
no keys, or ``"off"``) only the deadline applies: a clock read and a dict
insert and delete (:mod:`aimass.gateway.deadline`), about two microseconds,
nothing measurable beside a model call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aimass.errors import AimassError, ErrorCode
from aimass.gateway.deadline import Deadlines
from aimass.gateway.gateway import Gateway, key_from_headers
from aimass.gateway.keys import ApiKey
from aimass.gateway.ratelimit import Decision
from aimass.gateway.roles import Requirement, classify, in_scope
from aimass.server.body import read_body
from aimass.server.errors import Protocol, error_response, request_id

__all__ = ["KEY_SCOPE", "GatewayLayer"]

KEY_SCOPE = "aimass.key"
"""Where the layer leaves the caller's :class:`~aimass.gateway.keys.ApiKey` in the ASGI scope."""

logger = logging.getLogger("aimass.gateway")


def _protocol(path: str) -> Protocol:
    return Protocol.OPENAI if path.startswith("/v1/") else Protocol.OIP


def _source(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}" if client else ""


class GatewayLayer:
    """Admits each HTTP request through a :class:`Gateway` before ``app`` sees it."""

    def __init__(self, app: ASGIApp, gateway: Gateway, *, max_body_bytes: int) -> None:
        self.app = app
        self.gateway = gateway
        self.max_body_bytes = max_body_bytes
        self.timeout = gateway.settings.request_timeout_s
        self.deadlines = Deadlines(self.timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit (or refuse) one request, then run it under the deadline."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.gateway.off:
            await self._deadline(scope, receive, send)
            return
        table = await self.gateway.table()
        if not self.gateway.enforcing():
            await self._deadline(scope, receive, send)
            return
        requirement = classify(scope["method"], scope["path"])
        if requirement.role is None:
            await self._deadline(scope, receive, send)
            return
        await self._admit(scope, receive, send, table, requirement)

    async def _admit(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        table: dict[str, ApiKey],
        requirement: Requirement,
    ) -> None:
        gateway = self.gateway
        key: ApiKey | None = None
        decision: Decision | None = None
        status = 500
        try:
            key = gateway.authenticate(table, key_from_headers(scope["headers"]))
            gateway.authorize(key, requirement)
            model = requirement.model
            if requirement.model_in_body and key.models:
                model, scope, receive = await self._body_model(scope, receive)
            if model is not None and not in_scope(key.models, model):
                raise AimassError(
                    ErrorCode.PERMISSION_DENIED, f"this API key may not use model '{model}'"
                )
            decision = await gateway.admit(key, model)
            if decision is not None and not decision.allowed:
                raise AimassError(
                    ErrorCode.RATE_LIMITED,
                    "rate limit or quota exceeded for this API key",
                    retry_after=decision.headers()["retry-after"],
                )
        except AimassError as exc:
            status = exc.spec.http_status
            await self._refuse(exc, scope, receive, send, decision)
            if key is not None and requirement.management:
                await self._audit(key, scope, status)
            return
        scope[KEY_SCOPE] = key
        if decision is not None and decision.enforced:
            send = _with_headers(send, decision.headers())
        listing = _LISTINGS.get((scope["method"], scope["path"]))
        if key.models and listing is not None:
            scope, send = _filtered_listing(scope, send, key.models, listing)
        if requirement.management:
            send, seen = _status_of(send)
            await self._deadline(scope, receive, send)
            await self._audit(key, scope, seen.get("status", 500))
            return
        await self._deadline(scope, receive, send)

    async def _refuse(
        self,
        exc: AimassError,
        scope: Scope,
        receive: Receive,
        send: Send,
        decision: Decision | None,
    ) -> None:
        response = error_response(exc, _protocol(scope["path"]), request_id(scope["headers"]))
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

    async def _deadline(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app, answering 504 if it has not started its response in time."""
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        task = self.deadlines.start()
        try:
            await self.app(scope, receive, tracking)
        except asyncio.CancelledError:
            if not self.deadlines.finish(task):
                raise  # the client left or the server is stopping
            if started:
                # Half a response is out: all that is left is to cut the connection.
                logger.warning(
                    "%s %s passed its deadline mid-response", scope["method"], scope["path"]
                )
                return
            error = AimassError(
                ErrorCode.TIMEOUT, f"the request took longer than {self.timeout:g}s"
            )
            response = error_response(error, _protocol(scope["path"]), request_id(scope["headers"]))
            await response(scope, receive, send)
            return
        self.deadlines.finish(task)


def _with_headers(send: Send, headers: dict[str, str]) -> Send:
    extra = [(name.encode(), value.encode()) for name, value in headers.items()]

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sending


def _status_of(send: Send) -> tuple[Send, dict[str, int]]:
    seen: dict[str, int] = {}

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            seen["status"] = message["status"]
        await send(message)

    return sending, seen


_Listing = Callable[[Any, Callable[[str], bool]], Any]

# Endpoints that list models, and how to keep only the entries a scope allows.
_LISTINGS: dict[tuple[str, str], _Listing] = {
    ("GET", "/v1/models"): lambda doc, keep: {
        **doc,
        "data": [m for m in doc["data"] if keep(m["id"])],
    },
    ("POST", "/v2/repository/index"): lambda doc, keep: [m for m in doc if keep(m["name"])],
}


def _filtered_listing(
    scope: Scope, send: Send, patterns: tuple[str, ...], listing: _Listing
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
