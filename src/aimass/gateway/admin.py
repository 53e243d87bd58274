"""The admin API: keys and the audit log over HTTP, for admin keys only.

``GET/POST /admin/keys``, ``GET/DELETE /admin/keys/{id}`` and
``GET /admin/audit``. The gateway layer has already required an admin key;
these endpoints check again, so an open server (no keys yet) never lets an
anonymous caller mint the first key: that one comes from ``aimass keys
create``, run by whoever can reach the product database.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from aimass.contract.request import Caller
from aimass.errors import AimassError, ErrorCode
from aimass.gateway.gateway import Gateway
from aimass.gateway.keys import parse_expiry, parse_quota, parse_role
from aimass.http.body import json_response, read_json_object
from aimass.http.caller import caller_of
from aimass.http.errors import Protocol
from aimass.http.routes import Answer, Body, Param, Params, Route, json_content
from aimass.roles import Role

__all__ = ["SCHEMAS", "AdminRoutes"]

_MAX_BODY = 64 * 1024
_MAX_AUDIT = 1000

SCHEMAS: dict[str, Any] = {
    "ApiKey": {
        "type": "object",
        "required": ["id", "name", "prefix", "role", "models", "status"],
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
            "created_at": {"type": "string"},
            "created_by": {"type": "string"},
            "expires_at": {"type": ["string", "null"]},
            "revoked_at": {"type": ["string", "null"]},
            "status": {"type": "string", "enum": ["active", "expired", "revoked"]},
        },
    },
    "ApiKeyRequest": {
        "type": "object",
        "required": ["name", "role"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"\S"},
            "role": {"type": "string", "enum": [r.value for r in Role]},
            "models": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"\S"},
            },
            "rate": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1e9},
            "burst": {"type": ["integer", "null"], "minimum": 1, "maximum": 1_000_000_000},
            "per_model": {"type": "boolean"},
            "quota": {
                "type": ["string", "null"],
                "pattern": "^0*[1-9][0-9]{0,8}/(day|month)$",
                "description": "requests per calendar day or month (UTC): 1000/day",
            },
            "expires": {
                "type": ["string", "null"],
                "pattern": "^0*[1-9][0-9]{0,4}[smhdw]$",
                "description": "a duration from now: 30d, 12h, 2w (or an ISO date in the future)",
            },
        },
        # A burst is the size of a rate's bucket: there is none without a rate.
        "if": {"required": ["burst"], "properties": {"burst": {"type": "integer"}}},
        "then": {"required": ["rate"], "properties": {"rate": {"type": "number"}}},
    },
    "NewApiKey": {
        "type": "object",
        "required": ["key", "secret"],
        "properties": {
            "key": {"$ref": "#/components/schemas/ApiKey"},
            "secret": {"type": "string"},
        },
    },
    "AuditEvent": {
        "type": "object",
        "required": ["id", "at", "actor", "action", "target", "source", "status", "detail"],
        "properties": {
            "id": {"type": "integer"},
            "at": {"type": "string"},
            "actor": {"type": "string"},
            "action": {"type": "string"},
            "target": {"type": "string"},
            "source": {"type": "string"},
            "status": {"type": ["integer", "null"]},
            "detail": {"type": "object"},
        },
    },
}


def _caller(request: Request) -> Caller:
    caller = caller_of(request.scope)
    if caller is None or not caller.role.allows(Role.ADMIN):
        raise AimassError(
            ErrorCode.PERMISSION_DENIED,
            "the admin API needs an admin key (create the first with: aimass keys create "
            "--name NAME --role admin)",
        )
    return caller


def _source(request: Request) -> str:
    return request.client.host if request.client else ""


def _optional(body: dict[str, Any], field: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(field)
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON has one kind of number: 5.0 is the integer 5
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise AimassError(ErrorCode.INVALID_INPUT, f"'{field}' has the wrong type", field=field)
    return value


class AdminRoutes:
    """The admin endpoints, bound to one gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def routes(self) -> list[Route]:
        """The admin API's routes."""
        key_id = Param.string("id", description="the key's id (key_…)")
        common: dict[str, Any] = {"role": Role.ADMIN, "protocol": Protocol.OIP}
        denied = (ErrorCode.PERMISSION_DENIED,)
        return [
            Route(
                "GET",
                "/admin/keys",
                "listKeys",
                "List API keys",
                self.list_keys,
                answers=(
                    Answer(200, "every key, without secrets", json_content("ApiKey", many=True)),
                ),
                errors=denied,
                **common,
            ),
            Route(
                "POST",
                "/admin/keys",
                "createKey",
                "Create an API key (its secret is in this answer only)",
                self.create_key,
                body=Body(json_content("ApiKeyRequest")),
                answers=(Answer(201, "created", json_content("NewApiKey")),),
                errors=denied,
                **common,
            ),
            Route(
                "GET",
                "/admin/keys/{id}",
                "getKey",
                "One API key",
                self.get_key,
                params=(key_id,),
                answers=(Answer(200, "the key", json_content("ApiKey")),),
                errors=(*denied, ErrorCode.NOT_FOUND),
                **common,
            ),
            Route(
                "DELETE",
                "/admin/keys/{id}",
                "revokeKey",
                "Revoke an API key; it stops working at once",
                self.revoke_key,
                params=(key_id,),
                answers=(Answer(200, "the revoked key", json_content("ApiKey")),),
                errors=(*denied, ErrorCode.NOT_FOUND),
                **common,
            ),
            Route(
                "GET",
                "/admin/audit",
                "listAudit",
                "The audit log, newest first",
                self.audit,
                params=(
                    Param.integer("limit", "query", low=1, high=_MAX_AUDIT),
                    Param.string("actor", "query", description="only this key id (or cli:USER)"),
                    Param.string("action", "query", description="only this action: keys.create…"),
                ),
                answers=(Answer(200, "events", json_content("AuditEvent", many=True)),),
                errors=denied,
                **common,
            ),
        ]

    async def list_keys(self, request: Request, params: Params) -> Response:
        """``GET /admin/keys``: every key, without secrets."""
        _caller(request)
        keys = await run_in_threadpool(self.gateway.keys.list)
        now = self.gateway.now()
        return json_response([key.public(now) for key in keys])

    async def get_key(self, request: Request, params: Params) -> Response:
        """``GET /admin/keys/{id}``: one key."""
        _caller(request)
        key = await run_in_threadpool(self.gateway.keys.get, params["id"])
        return json_response(key.public(self.gateway.now()))

    async def create_key(self, request: Request, params: Params) -> Response:
        """``POST /admin/keys``: make a key; the response holds its secret, once."""
        caller = _caller(request)
        body = await read_json_object(request, _MAX_BODY)
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
                created_by=caller.key_id,
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
            actor=caller.key_id,
            action="keys.create",
            target=new.key.id,
            source=_source(request),
            status=201,
            detail={"name": new.key.name, "role": new.key.role.value},
        )
        return json_response({"key": new.key.public(self.gateway.now()), "secret": new.secret}, 201)

    async def revoke_key(self, request: Request, params: Params) -> Response:
        """``DELETE /admin/keys/{id}``: revoke a key; it stops working at once."""
        caller = _caller(request)
        key = await run_in_threadpool(self.gateway.keys.revoke, params["id"])
        self.gateway.invalidate()
        await self.gateway.record(
            actor=caller.key_id,
            action="keys.revoke",
            target=key.id,
            source=_source(request),
            status=200,
        )
        return json_response(key.public(self.gateway.now()))

    async def audit(self, request: Request, params: Params) -> Response:
        """``GET /admin/audit?limit=&actor=&action=``: the newest events first."""
        _caller(request)
        events = await run_in_threadpool(
            lambda: self.gateway.audit.list(
                limit=params.get("limit", 100),
                actor=params.get("actor"),
                action=params.get("action"),
            )
        )
        return json_response([event.public() for event in events])
