"""The admin API: keys and the audit log over HTTP, for admin keys only.

``GET/POST /admin/keys``, ``GET/DELETE /admin/keys/{id}`` and
``GET /admin/audit``. The gateway layer has already required an admin key;
these endpoints check again, so an open server (no keys yet) never lets an
anonymous caller mint the first key: that one comes from ``aimass keys
create``, run by whoever can reach the registry database.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aimass.codecs.request import parse_json_object
from aimass.errors import AimassError, ErrorCode
from aimass.gateway.gateway import Gateway
from aimass.gateway.keys import ApiKey, parse_expiry, parse_quota, parse_role
from aimass.gateway.roles import Role
from aimass.server.body import json_response, read_body
from aimass.server.errors import Protocol, guarded

__all__ = ["AdminRoutes", "admin_openapi_paths"]

_MAX_BODY = 64 * 1024
_MAX_AUDIT = 1000


def _caller(request: Request) -> ApiKey:
    from aimass.gateway.middleware import KEY_SCOPE

    key = request.scope.get(KEY_SCOPE)
    if not isinstance(key, ApiKey) or not key.role.allows(Role.ADMIN):
        raise AimassError(
            ErrorCode.PERMISSION_DENIED,
            "the admin API needs an admin key (create the first with: aimass keys create "
            "--name NAME --role admin)",
        )
    return key


def _source(request: Request) -> str:
    return request.client.host if request.client else ""


def _optional(body: dict[str, Any], field: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(field)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise AimassError(ErrorCode.INVALID_INPUT, f"'{field}' has the wrong type", field=field)
    return value


class AdminRoutes:
    """The admin endpoints, bound to one gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def routes(self) -> list[Route]:
        """Starlette routes of the admin API."""
        table: list[tuple[str, Any, list[str]]] = [
            ("/admin/keys", self.list_keys, ["GET"]),
            ("/admin/keys", self.create_key, ["POST"]),
            ("/admin/keys/{id}", self.get_key, ["GET"]),
            ("/admin/keys/{id}", self.revoke_key, ["DELETE"]),
            ("/admin/audit", self.audit, ["GET"]),
        ]
        return [
            Route(path, guarded(endpoint, Protocol.OIP), methods=methods)
            for path, endpoint, methods in table
        ]

    async def list_keys(self, request: Request) -> Response:
        """``GET /admin/keys``: every key, without secrets."""
        _caller(request)
        keys = await run_in_threadpool(self.gateway.keys.list)
        now = self.gateway.now()
        return json_response([key.public(now) for key in keys])

    async def get_key(self, request: Request) -> Response:
        """``GET /admin/keys/{id}``: one key."""
        _caller(request)
        key = await run_in_threadpool(self.gateway.keys.get, request.path_params["id"])
        return json_response(key.public(self.gateway.now()))

    async def create_key(self, request: Request) -> Response:
        """``POST /admin/keys``: make a key; the response holds its secret, once."""
        caller = _caller(request)
        body = parse_json_object(await read_body(request, _MAX_BODY))
        name = body.get("name")
        role = body.get("role")
        if not isinstance(name, str) or not isinstance(role, str):
            raise AimassError(
                ErrorCode.INVALID_INPUT, "'name' and 'role' are required strings", field="name"
            )
        models = body.get("models", [])
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise AimassError(
                ErrorCode.INVALID_INPUT, "'models' must be a list of strings", field="models"
            )
        rate = _optional(body, "rate", (int, float))
        burst = _optional(body, "burst", int)
        quota = _optional(body, "quota", str)
        expires = _optional(body, "expires", str)
        per_model = body.get("per_model", False)
        if not isinstance(per_model, bool):
            raise AimassError(
                ErrorCode.INVALID_INPUT, "'per_model' must be true or false", field="per_model"
            )
        new = await run_in_threadpool(
            lambda: self.gateway.keys.create(
                name=name,
                role=parse_role(role),
                created_by=caller.id,
                models=models,
                rate=None if rate is None else float(rate),
                burst=burst,
                per_model=per_model,
                quota=None if quota is None else parse_quota(quota),
                expires_at=None if expires is None else parse_expiry(expires),
            )
        )
        self.gateway.invalidate()
        await self.gateway.record(
            actor=caller.id,
            action="keys.create",
            target=new.key.id,
            source=_source(request),
            status=201,
            detail={"name": new.key.name, "role": new.key.role.value},
        )
        return json_response({"key": new.key.public(self.gateway.now()), "secret": new.secret}, 201)

    async def revoke_key(self, request: Request) -> Response:
        """``DELETE /admin/keys/{id}``: revoke a key; it stops working at once."""
        caller = _caller(request)
        key = await run_in_threadpool(self.gateway.keys.revoke, request.path_params["id"])
        self.gateway.invalidate()
        await self.gateway.record(
            actor=caller.id,
            action="keys.revoke",
            target=key.id,
            source=_source(request),
            status=200,
        )
        return json_response(key.public(self.gateway.now()))

    async def audit(self, request: Request) -> Response:
        """``GET /admin/audit?limit=&actor=&action=``: the newest events first."""
        _caller(request)
        raw = request.query_params.get("limit", "100")
        if not raw.isdigit() or not 1 <= int(raw) <= _MAX_AUDIT:
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"'limit' must be an integer from 1 to {_MAX_AUDIT}",
                field="limit",
            )
        events = await run_in_threadpool(
            lambda: self.gateway.audit.list(
                limit=int(raw),
                actor=request.query_params.get("actor"),
                action=request.query_params.get("action"),
            )
        )
        return json_response([event.public() for event in events])


def _response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = {"$ref": "#/components/schemas/OipError"}
_KEY = {"$ref": "#/components/schemas/ApiKey"}
_ERRORS = {
    "401": _response("missing or invalid API key", _ERROR),
    "403": _response("the key is not an admin key", _ERROR),
}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


def admin_openapi_paths() -> tuple[dict[str, Any], dict[str, Any]]:
    """The admin API's OpenAPI paths and the schemas they refer to."""
    key_schema = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "prefix": {"type": "string"},
            "role": {"type": "string", "enum": [r.value for r in Role]},
            "models": {"type": "array", "items": {"type": "string"}},
            "rate": {"type": ["number", "null"]},
            "burst": {"type": ["integer", "null"]},
            "per_model": {"type": "boolean"},
            "quota": {"type": ["string", "null"]},
            "status": {"type": "string", "enum": ["active", "expired", "revoked"]},
        },
    }
    create = {
        "type": "object",
        "required": ["name", "role"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 255},
            "role": {"type": "string", "enum": [r.value for r in Role]},
            "models": {"type": "array", "items": {"type": "string"}},
            "rate": {"type": "number", "exclusiveMinimum": 0},
            "burst": {"type": "integer", "minimum": 1},
            "per_model": {"type": "boolean"},
            "quota": {"type": "string", "pattern": "^[0-9]+/(day|month)$"},
            "expires": {"type": "string", "description": "30d, 12h, 2w or an ISO date"},
        },
    }
    listing = _response("OK", {"type": "array", "items": _KEY})
    bad = _response("invalid key settings", _ERROR)
    missing = _response("no such key", _ERROR)
    paths = {
        "/admin/keys": {
            "get": {"summary": "List API keys", "responses": {"200": listing, **_ERRORS}},
            "post": {
                "summary": "Create an API key (its secret is in this response only)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": create}},
                },
                "responses": {
                    "201": _response(
                        "created",
                        {
                            "type": "object",
                            "properties": {"key": _KEY, "secret": {"type": "string"}},
                        },
                    ),
                    "400": bad,
                    **_ERRORS,
                },
            },
        },
        "/admin/keys/{id}": {
            "get": {
                "summary": "One API key",
                "parameters": [_ID],
                "responses": {"200": _response("OK", _KEY), "404": missing, **_ERRORS},
            },
            "delete": {
                "summary": "Revoke an API key",
                "parameters": [_ID],
                "responses": {"200": _response("OK", _KEY), "404": missing, **_ERRORS},
            },
        },
        "/admin/audit": {
            "get": {
                "summary": "The audit log, newest first",
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    {"name": "actor", "in": "query", "schema": {"type": "string"}},
                    {"name": "action", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": _response("OK", {"type": "array", "items": {"type": "object"}}),
                    "400": bad,
                    **_ERRORS,
                },
            }
        },
    }
    return paths, {"ApiKey": key_schema}
