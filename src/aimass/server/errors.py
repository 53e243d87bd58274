"""Errors to HTTP responses: the catalog mapped once for each protocol.

OIP bodies are ``{"error": "..."}``; OpenAI bodies are ``{"error": {"message",
"type", "param", "code"}}``. The status, the OpenAI type and whether to send
``Retry-After`` all come from :data:`aimass.errors.CATALOG`. Anything that is
not an :class:`AimassError` is a bug: it is logged with its traceback and a
request id, and the client gets a public message quoting that id. Endpoints
are wrapped by :func:`guarded`, so no exception ever reaches the ASGI server.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from enum import StrEnum

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from aimass.errors import AimassError, ErrorCode
from aimass.server.body import json_response

__all__ = [
    "Endpoint",
    "Protocol",
    "error_response",
    "failure_response",
    "guarded",
    "http_exception_handler",
    "request_id",
]

logger = logging.getLogger("aimass.server")

Endpoint = Callable[[Request], Awaitable[Response]]
"""A Starlette endpoint: a request in, a response out."""

_STATUS_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}


class Protocol(StrEnum):
    """Which error body shape a route speaks."""

    OIP = "oip"
    OPENAI = "openai"


def request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's ``X-Request-ID`` (from raw ASGI headers) if it sent one, else a fresh one."""
    for name, value in headers:
        if name == b"x-request-id" and value:
            return value.decode("latin-1")
    return uuid.uuid4().hex


def error_response(exc: AimassError, protocol: Protocol, rid: str) -> Response:
    """The response for ``exc`` in ``protocol``'s body shape."""
    spec = exc.spec
    message = exc.message
    if spec.http_status >= 500:
        message = f"{message} (request id {rid})"
    headers = {"x-request-id": rid}
    if spec.retryable and spec.http_status in (429, 503):
        headers["retry-after"] = str(exc.details.get("retry_after", 1))
    if exc.code is ErrorCode.METHOD_NOT_ALLOWED and "allow" in exc.details:
        headers["allow"] = str(exc.details["allow"])
    if protocol is Protocol.OIP:
        return json_response({"error": message}, spec.http_status, headers)
    param = exc.details.get("param", exc.details.get("field"))
    body = {
        "error": {
            "message": message,
            "type": spec.openai_type,
            "param": param,
            "code": exc.code.value,
        }
    }
    return json_response(body, spec.http_status, headers)


def _internal(exc: BaseException, rid: str) -> AimassError:
    logger.error("request %s failed", rid, exc_info=exc)
    return AimassError(ErrorCode.INTERNAL, "internal server error")


def failure_response(exc: Exception, protocol: Protocol, rid: str) -> Response:
    """The response for whatever an endpoint raised: its own error, or a logged INTERNAL."""
    if not isinstance(exc, AimassError):
        return error_response(_internal(exc, rid), protocol, rid)
    if exc.spec.http_status >= 500 and not exc.spec.retryable:
        logger.warning("request %s: %s", rid, exc.message)
    return error_response(exc, protocol, rid)


def guarded(endpoint: Endpoint, protocol: Protocol) -> Endpoint:
    """``endpoint`` with every exception turned into ``protocol``'s error response."""

    async def handle(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ClientDisconnect:
            return Response(status_code=499)
        except Exception as exc:
            return failure_response(exc, protocol, request_id(request.scope["headers"]))

    handle.__name__ = getattr(endpoint, "__name__", "endpoint")
    handle.__doc__ = endpoint.__doc__
    return handle


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Routing failures (no such path, wrong method) in the body shape of the path's protocol."""
    protocol = Protocol.OPENAI if request.url.path.startswith("/v1/") else Protocol.OIP
    rid = request_id(request.scope["headers"])
    if not isinstance(exc, HTTPException):
        return error_response(_internal(exc, rid), protocol, rid)
    method, path = request.method, request.url.path
    code = _STATUS_CODES.get(exc.status_code, ErrorCode.INVALID_INPUT)
    if code is ErrorCode.NOT_FOUND:
        error = AimassError(code, f"no route {method} {path}")
    elif code is ErrorCode.METHOD_NOT_ALLOWED:
        allow = (exc.headers or {}).get("Allow", "")
        error = AimassError(code, f"{method} is not allowed on {path}; use {allow}", allow=allow)
    else:
        error = AimassError(code, str(exc.detail))
    return error_response(error, protocol, rid)
