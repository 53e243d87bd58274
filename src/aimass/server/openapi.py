"""``/openapi.json``: the OpenAPI 3.1 document, built from the route table.

Every operation comes from its :class:`~aimass.http.routes.Route`: its
parameters, body and answers, and the errors it can give, taken from the
error catalog. Each operation also says, in ``x-aimass-role`` and
``x-aimass-protocol``, the least role it needs and the shape of its error
bodies. The document describes the server as it is now: its API-key schemes
appear only while the gateway requires keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from aimass.errors import CATALOG, ErrorCode
from aimass.gateway.gateway import Gateway
from aimass.http.body import json_response
from aimass.http.errors import Protocol
from aimass.http.routes import Answer, Params, Route, RouteTable

__all__ = ["ERROR_SCHEMAS", "OpenApi", "openapi_document"]

ERROR_SCHEMAS: dict[str, Any] = {
    "OipError": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "OpenAIError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
}
"""The error bodies of each protocol."""

_ERROR_SCHEMA = {Protocol.OIP: "OipError", Protocol.OPENAI: "OpenAIError"}
# What any route may answer: a malformed request, a bug, the request deadline.
_ALWAYS = (ErrorCode.INVALID_INPUT, ErrorCode.INTERNAL, ErrorCode.TIMEOUT)
# What the gateway answers for a route that needs a key, while keys are required.
_GATEWAY = (
    ErrorCode.UNAUTHENTICATED,
    ErrorCode.PERMISSION_DENIED,
    ErrorCode.RATE_LIMITED,
    ErrorCode.NOT_READY,
)


def openapi_document(table: RouteTable, version: str, *, secured: bool) -> dict[str, Any]:
    """The document of a server of ``version`` serving ``table``; ``secured``: keys required."""
    paths: dict[str, dict[str, Any]] = {}
    for route in table.routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, secured)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "aimass", "version": version},
        "paths": paths,
        "components": {"schemas": {**table.schemas, **ERROR_SCHEMAS}},
    }
    if secured:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        }
        document["security"] = [{"bearer": []}, {"apiKey": []}]
    return document


def _operation(route: Route, secured: bool) -> dict[str, Any]:
    errors: set[ErrorCode] = {*route.errors, *_ALWAYS}
    if route.body is not None:
        errors.add(ErrorCode.PAYLOAD_TOO_LARGE)
    if secured and route.role is not None:
        errors.update(_GATEWAY)
    operation: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "parameters": [param.openapi() for param in route.params],
        "responses": _responses(route.answers, errors, _ERROR_SCHEMA[route.protocol]),
        "x-aimass-role": "none" if route.role is None else route.role.value,
        "x-aimass-protocol": route.protocol.value,
    }
    if route.body is not None:
        operation["requestBody"] = {
            "required": route.body.required,
            "content": {media: {"schema": schema} for media, schema in route.body.content.items()},
        }
    if secured and route.role is None:
        operation["security"] = []
    return operation


def _responses(
    answers: Iterable[Answer], errors: Iterable[ErrorCode], error_schema: str
) -> dict[str, Any]:
    """Each answer and each error status; a status both answer and error may be is either."""
    by_status: dict[int, list[ErrorCode]] = {}
    for code in errors:
        by_status.setdefault(CATALOG[code].http_status, []).append(code)
    error = {"$ref": f"#/components/schemas/{error_schema}"}
    responses: dict[str, Any] = {}
    for answer in answers:
        content = {media: {"schema": schema} for media, schema in answer.content.items()}
        codes = by_status.pop(answer.status, None)
        if codes is not None:
            content = {
                media: {"schema": {"oneOf": [body["schema"], error]}}
                for media, body in content.items()
            }
        responses[str(answer.status)] = {"description": answer.description, "content": content}
    for status, codes in sorted(by_status.items()):
        responses[str(status)] = {
            "description": ", ".join(sorted(code.value for code in codes)),
            "content": {"application/json": {"schema": error}},
        }
    return responses


class OpenApi:
    """The ``/openapi.json`` route; it needs the table it belongs to (:meth:`bind`)."""

    def __init__(self, version: str, gateway: Gateway) -> None:
        self.version = version
        self.gateway = gateway
        self._documents: dict[bool, dict[str, Any]] = {}

    def route(self) -> Route:
        """The route, open to anyone."""
        return Route(
            "GET",
            "/openapi.json",
            "openapi",
            "This document",
            self.serve,
            None,
            Protocol.OIP,
            answers=(
                Answer(200, "the OpenAPI document", {"application/json": {"type": "object"}}),
            ),
        )

    def bind(self, table: RouteTable) -> None:
        """Build both documents (keys required or not) of the server ``table`` describes."""
        self._documents = {
            secured: openapi_document(table, self.version, secured=secured)
            for secured in (False, True)
        }

    async def serve(self, request: Request, params: Params) -> Response:
        """``GET /openapi.json``: the document, as the server is now."""
        await self.gateway.table()  # fresh, so that whether keys are required is current
        return json_response(self._documents[self.gateway.enforcing()])
