"""The route table and ``/openapi.json`` describe one URL space: each route an operation, and back.

The server's own document is read over HTTP and held against the route table
the composition root builds from the same settings; the server's answers to
``OPTIONS`` are held against the methods the document declares.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aimass.app import route_table
from aimass.gateway.gateway import Gateway
from aimass.http.routes import Route, RouteTable
from aimass.registry import Registry
from aimass.serving import build_engine
from aimass.settings import Settings

_METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def table(server_settings: Settings, server_registry: Registry) -> RouteTable:
    engine = build_engine(server_registry, server_settings.serving)
    gateway = Gateway.from_settings(server_settings, server_registry.database)
    return route_table(server_settings, engine=engine, registry=server_registry, gateway=gateway)


@pytest.fixture(scope="module")
def document(base_url: str) -> dict[str, Any]:
    response = httpx.get(f"{base_url}/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as opened:
        yield opened


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in _METHODS
    }


def test_every_route_is_its_documented_operation(
    table: RouteTable, document: dict[str, Any]
) -> None:
    operations = _operations(document)
    for route in table.routes:
        operation = operations.get((route.method, route.path))
        assert operation is not None, f"{route.method} {route.path} is not documented"
        assert operation["operationId"] == route.name
        assert operation["summary"] == route.summary
        assert operation["x-aimass-role"] == ("none" if route.role is None else route.role.value)
        assert operation["x-aimass-protocol"] == route.protocol.value
        assert [(p["name"], p["in"]) for p in operation["parameters"]] == [
            (p.name, p.location) for p in route.params
        ]
        assert ("requestBody" in operation) == (route.body is not None)
        for answer in route.answers:
            assert str(answer.status) in operation["responses"], (route.name, answer.status)
        assert "500" in operation["responses"]  # a bug can happen anywhere, and is documented


def test_every_documented_operation_is_a_route(table: RouteTable, document: dict[str, Any]) -> None:
    declared = {(route.method, route.path) for route in table.routes}
    assert set(_operations(document)) == declared
    assert len(declared) == len(table.routes)  # no route declared twice


def test_every_reference_in_the_document_resolves(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    refs: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "$ref" in value:
                refs.append(value["$ref"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(document)
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/") and ref.split("/")[-1] in schemas, ref


def test_an_open_server_declares_no_key_schemes(document: dict[str, Any]) -> None:
    assert "security" not in document
    assert "securitySchemes" not in document["components"]


def _concrete(route: Route) -> str:
    return (
        route.path.replace("{name}", "iris")
        .replace("{version}", "1")
        .replace("{model}", "iris")
        .replace("{id}", "1")
    )


def test_options_allow_exactly_the_documented_methods(
    table: RouteTable, document: dict[str, Any], client: httpx.Client
) -> None:
    for path, item in document["paths"].items():
        declared = {method.upper() for method in item if method in _METHODS}
        route = next(r for r in table.routes if r.path == path)
        response = client.options(_concrete(route))
        assert response.status_code == 405, path
        allowed = {m.strip() for m in response.headers["allow"].split(",")}
        assert allowed - {"HEAD"} == declared, path
