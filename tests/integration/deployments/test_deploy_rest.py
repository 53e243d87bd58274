"""``/v1/deployments`` over real HTTP: the deployer role, bodies checked field by field, audit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from aimass.app import create_app
from aimass.gateway.audit import AuditLog
from aimass.gateway.gateway import Gateway
from aimass.gateway.keys import KeyStore
from aimass.registry import Registry
from aimass.roles import Role
from aimass.settings import Settings
from aimass.testing.server import serve_in_thread
from tests.integration.deployments.surfaces import fill


@dataclass
class Server:
    """A server that requires keys, a client per role, and its registry's audit log."""

    clients: dict[str, httpx.Client]
    audit: AuditLog
    deployer_id: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = Settings.model_validate(
        {
            "home": tmp_path_factory.mktemp("deploy-rest"),
            "deployments": {"poll_interval_s": 0.1, "stats_interval_s": 0.2, "stats_bucket_s": 1},
        }
    )
    registry = Registry.from_settings(settings)
    fill(registry)
    keys = KeyStore(registry.database)
    secrets = {
        role.value: keys.create(name=role.value, role=role, created_by="test") for role in Role
    }
    gateway = Gateway.from_settings(settings, registry.database)
    try:
        with serve_in_thread(create_app(settings, registry=registry, gateway=gateway)) as url:
            clients = {
                role: httpx.Client(
                    base_url=url, timeout=60, headers={"authorization": f"Bearer {new.secret}"}
                )
                for role, new in secrets.items()
            }
            clients["anonymous"] = httpx.Client(base_url=url, timeout=60)
            yield Server(clients, AuditLog(registry.database), secrets["deployer"].key.id)
            for client in clients.values():
                client.close()
    finally:
        registry.close()


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    error: dict[str, Any] = body["error"]
    return error


def _split(deployment: dict[str, Any]) -> dict[str, float]:
    return {t["ref"]: t["weight"] for t in deployment["targets"]}


def test_a_deployer_creates_changes_reads_and_deletes(server: Server) -> None:
    http = server.clients["deployer"]
    made = _ok(http.post("/v1/deployments", json={"name": "api", "ref": "iris:1"}), 201)
    assert _split(made) == {"iris:1": 100.0} and made["created_by"] == server.deployer_id
    assert "api" in [d["name"] for d in _ok(http.get("/v1/deployments"))["deployments"]]
    split = _ok(
        http.post(
            "/v1/deployments/api/set",
            json={"targets": [{"ref": "iris:1", "weight": 75}, {"ref": "iris:2", "weight": 25}]},
        )
    )
    assert _split(split) == {"iris:1": 75.0, "iris:2": 25.0}
    canary = _ok(
        http.post(
            "/v1/deployments/api/canary",
            json={
                "ref": "iris@production",
                "weight": 10,
                "guard": {"max_error_rate": 0.05, "window_s": 30, "min_requests": 5},
                "progression": {"step": 5, "interval_s": 30},
            },
        )
    )
    assert canary["canary"]["guard"]["max_error_rate"] == 0.05
    assert canary["canary"]["progression"] == {"step": 5.0, "interval_s": 30.0, "max_weight": 100.0}
    promoted = _ok(http.post("/v1/deployments/api/promote"))
    assert _split(promoted) == {"iris@production": 100.0}
    assert _split(_ok(http.post("/v1/deployments/api/rollback"))) == _split(canary)
    shown = _ok(http.get("/v1/deployments/api", params={"window_s": 60}))
    assert shown["window_s"] == 60 and isinstance(shown["stats"], dict) and "status" in shown
    kinds = [e["kind"] for e in _ok(http.get("/v1/deployments/api/history"))["events"]]
    assert kinds[:5] == ["create", "set", "canary", "promote", "rollback"]
    removed = _ok(http.delete("/v1/deployments/api"))
    assert removed["name"] == "api"
    gone = _error(http.get("/v1/deployments/api"), 404)
    assert gone["code"] == "not_found" and "api" in gone["message"]


def test_shadow_on_and_off(server: Server) -> None:
    http = server.clients["deployer"]
    _ok(http.post("/v1/deployments", json={"name": "copied", "ref": "iris:1"}), 201)
    on = _ok(http.post("/v1/deployments/copied/shadow", json={"ref": "iris:2", "sample": 0.5}))
    assert on["shadows"] == [{"ref": "iris:2", "sample": 0.5}]
    off = _ok(http.post("/v1/deployments/copied/shadow", json={"off": True}))
    assert off["shadows"] == []


ROUTES = [
    ("GET", "/v1/deployments", None),
    ("POST", "/v1/deployments", {"name": "x", "ref": "iris:1"}),
    ("GET", "/v1/deployments/x", None),
    ("DELETE", "/v1/deployments/x", None),
    ("POST", "/v1/deployments/x/set", {"targets": [{"ref": "iris:1", "weight": 100}]}),
    ("POST", "/v1/deployments/x/canary", {"ref": "iris:2", "weight": 10}),
    ("POST", "/v1/deployments/x/promote", None),
    ("POST", "/v1/deployments/x/rollback", None),
    ("POST", "/v1/deployments/x/shadow", {"off": True}),
    ("GET", "/v1/deployments/x/history", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_only_a_deployer_may_use_a_deployment_route(
    server: Server, method: str, path: str, body: Any
) -> None:
    anonymous = _error(server.clients["anonymous"].request(method, path, json=body), 401)
    assert anonymous["code"] == "unauthenticated"
    refused = _error(server.clients["invoker"].request(method, path, json=body), 403)
    assert refused["code"] == "permission_denied" and "needs deployer" in refused["message"]
    # Let through, for a deployer and an admin alike: no deployment x is a 404, not a refusal.
    for role in ("deployer", "admin"):
        status = server.clients[role].request(method, path, json=body).status_code
        assert status in (200, 201, 404, 409), (role, method, path, status)
    server.clients["admin"].delete("/v1/deployments/x")


@pytest.mark.parametrize(
    ("path", "body", "param", "message"),
    [
        ("/v1/deployments", b"{not json", None, "JSON"),
        ("/v1/deployments", [1, 2], None, "object"),
        ("/v1/deployments", {"ref": "iris:1"}, "name", "Field required"),
        ("/v1/deployments", {"name": "n", "ref": "iris:1", "extra": 1}, "extra", "not permitted"),
        ("/v1/deployments", {"name": 5, "ref": "iris:1"}, "name", "valid string"),
        ("/v1/deployments", {"name": "n", "ref": "iris"}, None, "must name a version"),
        ("/v1/deployments", {"name": "bad name", "ref": "iris:1"}, None, "must start with"),
        ("/v1/deployments", {"name": "n", "ref": "iris:1", "sticky": "cookie"}, "sticky", "header"),
        ("/v1/deployments/rest/set", {"targets": []}, "targets", "at least 1"),
        (
            "/v1/deployments/rest/set",
            {"targets": [{"ref": "iris:1", "weight": "100"}]},
            "targets.0.weight",
            "valid number",
        ),
        (
            "/v1/deployments/rest/set",
            {"targets": [{"ref": "iris:1", "weight": True}]},
            "targets.0.weight",
            "valid number",
        ),
        (
            "/v1/deployments/rest/set",
            {"targets": [{"ref": "iris:1", "weight": -1.7976931348623157e308}]},
            "weight",
            "must be a percentage",
        ),
        (
            "/v1/deployments/rest/set",
            {"targets": [{"ref": "iris:1", "weight": 50}]},
            "targets",
            "sum to 100, not 50",
        ),
        (
            "/v1/deployments/rest/set",
            {"targets": [{"ref": "iris:1", "weight": 99.95}, {"ref": "iris:2", "weight": 0.05}]},
            "weight",
            "0.1 steps",
        ),
        (
            "/v1/deployments/rest/set",
            {"targets": [{"ref": "iris:1", "weight": 50}, {"ref": "iris:1", "weight": 50}]},
            "targets",
            "given twice",
        ),
        (
            "/v1/deployments/rest/canary",
            {"ref": "iris:2", "weight": 10, "guard": {"max_error_rate": 2}},
            "guard.max_error_rate",
            "less than or equal to 1",
        ),
        (
            "/v1/deployments/rest/canary",
            {"ref": "iris:2", "weight": 10, "progression": {"step": 10}},
            "progression.interval_s",
            "Field required",
        ),
        ("/v1/deployments/rest/canary", {"ref": "iris:2", "weight": 0}, "weight", "above 0"),
        ("/v1/deployments/rest/shadow", {"sample": 0.5}, "ref", "'ref' is required"),
        ("/v1/deployments/rest/shadow", {"ref": "iris:2", "sample": 0}, "sample", "fraction"),
    ],
)
def test_a_bad_body_is_a_400_saying_what_is_wrong(
    server: Server, path: str, body: Any, param: str | None, message: str
) -> None:
    http = server.clients["deployer"]
    http.post("/v1/deployments", json={"name": "rest", "ref": "iris:1"})
    if isinstance(body, bytes):
        response = http.post(path, content=body)
    else:
        response = http.post(path, json=body)
    error = _error(response, 400)
    assert error["code"] == "invalid_input" and message in error["message"], error
    if param is not None:
        assert error["param"] == param, error


def test_bad_query_parameters_are_400s(server: Server) -> None:
    http = server.clients["deployer"]
    http.post("/v1/deployments", json={"name": "rest", "ref": "iris:1"})
    assert _error(http.get("/v1/deployments/rest?window_s=0"), 400)["param"] == "window_s"
    assert _error(http.get("/v1/deployments/rest?since=1"), 400)["param"] == "since"


def test_conflicts_are_409s(server: Server) -> None:
    http = server.clients["deployer"]
    _ok(http.post("/v1/deployments", json={"name": "twice", "ref": "iris:1"}), 201)
    again = _error(http.post("/v1/deployments", json={"name": "twice", "ref": "iris:2"}), 409)
    assert "twice" in again["message"]
    named = _error(http.post("/v1/deployments", json={"name": "iris", "ref": "iris:1"}), 409)
    assert "iris" in named["message"]
    promote = _error(http.post("/v1/deployments/twice/promote"), 409)
    assert "canary" in promote["message"]
    missing = _error(http.post("/v1/deployments", json={"name": "lost", "ref": "iris:99"}), 404)
    assert "iris" in missing["message"]


def test_a_version_that_fails_its_warm_up_is_a_409_and_nothing_changes(server: Server) -> None:
    http = server.clients["deployer"]
    before = _ok(http.post("/v1/deployments", json={"name": "safe", "ref": "iris:1"}), 201)
    refused = _error(
        http.post(
            "/v1/deployments/safe/set", json={"targets": [{"ref": "broken:1", "weight": 100}]}
        ),
        409,
    )
    assert "broken:1 was refused: it failed to load or warm up" in refused["message"]
    after = _ok(http.get("/v1/deployments/safe"))
    assert (after["revision"], _split(after)) == (before["revision"], {"iris:1": 100.0})


def test_every_change_is_audited_with_the_key_that_made_it(server: Server) -> None:
    http = server.clients["deployer"]
    _ok(http.post("/v1/deployments", json={"name": "watched", "ref": "iris:1"}), 201)
    _ok(
        http.post(
            "/v1/deployments/watched/set", json={"targets": [{"ref": "iris:2", "weight": 100}]}
        )
    )
    events = [e for e in server.audit.list(limit=1000) if "watched" in e.target]
    assert len(events) == 2 and {e.actor for e in events} == {server.deployer_id}


def test_the_document_says_every_deployment_route_needs_a_deployer(server: Server) -> None:
    document = _ok(server.clients["anonymous"].get("/openapi.json"))
    operations = {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        if path.startswith("/v1/deployments")
        for method, operation in item.items()
    }
    assert set(operations) == {
        (method, path.replace("/x", "/{name}")) for method, path, _ in ROUTES
    }
    assert {op["x-aimass-role"] for op in operations.values()} == {"deployer"}


def _until(check: Any, what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)  # polling a condition with a deadline, not waiting for it
    raise AssertionError(f"timed out waiting for {what}")


def test_show_has_this_servers_status(server: Server) -> None:
    http = server.clients["deployer"]
    made = _ok(
        http.post("/v1/deployments", json={"name": "counted", "ref": "iris@production"}), 201
    )

    def converged() -> Any:
        status = _ok(http.get("/v1/deployments/counted"))["status"]
        return status if status["revision"] == made["revision"] and status["converged"] else None

    status = _until(converged, "the server to serve the deployment")
    assert status["serving"]["targets"] == [
        {"ref": "iris@production", "version": "iris:1", "weight": 100.0}
    ]
    assert status["error"] is None


def test_show_counts_what_the_servers_served(server: Server) -> None:
    http = server.clients["deployer"]
    _ok(http.post("/v1/deployments", json={"name": "counted2", "ref": "iris:1"}), 201)
    row = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [5, 3, 1, 0]}]}

    def infer() -> bool:
        return server.clients["invoker"].post("/v2/models/counted2/infer", json=row).is_success

    _until(infer, "the server to serve the deployment")
    for _ in range(4):
        assert infer()
    stats = _until(
        lambda: (
            (s := _ok(http.get("/v1/deployments/counted2"))["stats"])
            .get("iris:1", {})
            .get("requests", 0)
            >= 5
            and s
        ),
        "the stats to reach the store",
    )
    assert stats["iris:1"]["role"] == "target" and stats["iris:1"]["errors"] == 0
    # Timed finer than uvloop's clock, whose whole milliseconds would read iris's calls as 0.
    assert 0 < stats["iris:1"]["p50_ms"] < 1000
