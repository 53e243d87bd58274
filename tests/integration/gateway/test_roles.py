"""Every role against every endpoint class, over real HTTP: 401, 403 or through."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openai import AuthenticationError, OpenAI

from aimass.roles import Role
from tests.integration.gateway.gatewaytest import IRIS_ROW, ServeFactory

NONE, BAD = "none", "bad"
THROUGH = 0
"""Let through to the endpoint: any answer but 401, 403 or a 5xx other than a 503 not-ready."""
ROLES = [NONE, BAD, Role.INVOKER, Role.DEPLOYER, Role.ADMIN]

# (endpoint class, method, path, json body, expected status for each of ROLES)
ENDPOINTS: list[tuple[str, str, str, Any, tuple[int, ...]]] = [
    ("health live", "GET", "/v2/health/live", None, (200, 200, 200, 200, 200)),
    ("health ready", "GET", "/v2/health/ready", None, (200, 200, 200, 200, 200)),
    ("openapi", "GET", "/openapi.json", None, (200, 200, 200, 200, 200)),
    ("api docs", "GET", "/docs", None, (200, 200, 200, 200, 200)),
    ("api docs file", "GET", "/docs/swagger-ui.css", None, (200, 200, 200, 200, 200)),
    ("server metadata", "GET", "/v2", None, (401, 401, 200, 200, 200)),
    ("model metadata", "GET", "/v2/models/iris", None, (401, 401, 200, 200, 200)),
    (
        "model readiness",
        "GET",
        "/v2/models/iris/versions/1/ready",
        None,
        (401, 401, THROUGH, THROUGH, THROUGH),
    ),
    ("inference", "POST", "/v2/models/iris/infer", IRIS_ROW, (401, 401, 200, 200, 200)),
    ("openai models", "GET", "/v1/models", None, (401, 401, 200, 200, 200)),
    ("openai model", "GET", "/v1/models/iris", None, (401, 401, 200, 200, 200)),
    (
        "openai embeddings",  # iris embeds nothing: the endpoint's own 400 means "let through"
        "POST",
        "/v1/embeddings",
        {"model": "iris", "input": ["x"]},
        (401, 401, 400, 400, 400),
    ),
    ("repository index", "POST", "/v2/repository/index", None, (401, 401, 403, 200, 200)),
    ("repository load", "POST", "/v2/repository/models/iris/load", None, (401, 401, 403, 200, 200)),
    # No route declares /metrics (yet): like any undeclared path, it needs admin.
    ("metrics", "GET", "/metrics", None, (401, 401, 403, 403, 404)),
    ("training runs", "GET", "/v1/runs", None, (401, 401, 403, 200, 200)),
    ("admin keys", "GET", "/admin/keys", None, (401, 401, 403, 403, 200)),
    ("admin audit", "GET", "/admin/audit", None, (401, 401, 403, 403, 200)),
    ("unclassified path", "GET", "/v2/nowhere", None, (401, 401, 403, 403, 404)),
]


def _error_message(response: httpx.Response, path: str) -> str:
    body = response.json()
    if path.startswith("/v1/"):
        assert set(body["error"]) == {"message", "type", "param", "code"}
        message: str = body["error"]["message"]
    else:
        assert isinstance(body["error"], str)
        message = body["error"]
    return message


def test_every_role_against_every_endpoint_class(serve: ServeFactory) -> None:
    with serve() as served:
        secrets: dict[str, str] = {
            role: served.key(role) for role in (Role.INVOKER, Role.DEPLOYER, Role.ADMIN)
        }
        secrets[BAD] = "aimass_" + "x" * 43
        for index, role in enumerate(ROLES):
            with served.client(secrets.get(role)) as client:
                for name, method, path, body, expected in ENDPOINTS:
                    response = client.request(method, path, json=body)
                    want = expected[index]
                    if want == THROUGH:
                        assert response.status_code in (200, 503), (role, name, response.text)
                    else:
                        assert response.status_code == want, (role, name, response.text)
                    if response.status_code in (401, 403):
                        assert _error_message(response, path), (role, name)
                    if response.status_code == 401:
                        assert response.headers["www-authenticate"].startswith("Bearer")


def test_x_api_key_header_works_like_bearer(serve: ServeFactory) -> None:
    with serve() as served:
        secret = served.key(Role.INVOKER)
        with served.client() as client:
            assert client.get("/v2", headers={"x-api-key": secret}).status_code == 200
            assert client.get("/v2", headers={"x-api-key": secret + "x"}).status_code == 401


def test_openai_client_authenticates_with_api_key(serve: ServeFactory) -> None:
    with serve() as served:
        secret = served.key(Role.INVOKER)
        good = OpenAI(base_url=f"{served.url}/v1", api_key=secret)
        assert "iris" in {model.id for model in good.models.list()}
        bad = OpenAI(base_url=f"{served.url}/v1", api_key="aimass_wrong", max_retries=0)
        with pytest.raises(AuthenticationError) as raised:
            bad.models.list()
        assert raised.value.status_code == 401
        assert raised.value.body is not None


def test_wrong_and_unknown_keys_get_the_same_answer(serve: ServeFactory) -> None:
    with serve() as served:
        real = served.key(Role.INVOKER)
        near_miss = real[:-1] + ("A" if real[-1] != "A" else "B")
        answers = []
        for guess in (near_miss, "aimass_" + "q" * 43, "not-even-a-key"):
            with served.client(guess) as client:
                response = client.get("/v2/models/iris")
                answers.append((response.status_code, response.json()))
        assert answers[0] == answers[1] == answers[2] == (401, {"error": "invalid API key"})


@pytest.mark.parametrize(
    ("mode", "with_key", "expected"),
    [
        ("auto", False, 200),  # a local demo: no keys, open
        ("auto", True, 401),  # the first key closes it
        ("on", False, 401),
        ("off", True, 200),
    ],
)
def test_gateway_modes(serve: ServeFactory, mode: str, with_key: bool, expected: int) -> None:
    with serve(enabled=mode) as served:
        if with_key:
            served.key(Role.ADMIN)
        with served.client() as client:
            assert client.post("/v2/models/iris/infer", json=IRIS_ROW).status_code == expected
            assert client.get("/v2/health/ready").status_code == 200


def test_admin_api_is_closed_while_the_server_is_open(serve: ServeFactory) -> None:
    with serve() as served, served.client() as client:
        response = client.post("/admin/keys", json={"name": "first", "role": "admin"})
        assert response.status_code == 403
        assert "aimass keys create" in response.json()["error"]
        assert served.keys.list() == []
