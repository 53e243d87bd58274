"""What probes and unlucky clients see: readiness that converges, 5xx bodies that hide the server.

Each server here is real, on its own registry: a readiness probe alone brings
a registered model up; a corrupted artifact answers 500 with the public
message and the request id, the store's path going to the log only; an
integer in a path or a query that no database can hold is a 4xx.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aimass.app import create_app
from aimass.registry import Registry
from aimass.settings import Settings
from aimass.testing.models import iris_classifier
from aimass.testing.server import serve_in_thread

ROW = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [5, 3, 1, 0]}]}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    registry = Registry.from_settings(Settings(home=tmp_path))
    try:
        clf, x = iris_classifier()
        registry.register(clf, "iris", sample_input=x[:2])
    finally:
        registry.close()
    return tmp_path


@pytest.fixture
def client(home: Path) -> Iterator[httpx.Client]:
    settings = Settings(home=home)
    registry = Registry.from_settings(settings)
    try:
        with (
            serve_in_thread(create_app(settings, registry=registry)) as url,
            httpx.Client(base_url=url, timeout=30) as opened,
        ):
            yield opened
    finally:
        registry.close()


def test_a_readiness_probe_alone_brings_a_model_up(client: httpx.Client) -> None:
    assert client.post("/v2/repository/index", json={"ready": True}).json() == []
    first = client.get("/v2/models/iris/ready")
    assert first.status_code == 503 and first.json() == {"name": "iris", "ready": False}
    deadline = time.monotonic() + 60
    while (probe := client.get("/v2/models/iris/ready")).status_code != 200:
        assert probe.status_code == 503, probe.text
        assert time.monotonic() < deadline, "the probe never brought the model up"
        time.sleep(0.05)  # a probe's own period; nothing else starts the load
    assert probe.json() == {"name": "iris", "ready": True}
    [entry] = client.post("/v2/repository/index", json={"ready": True}).json()
    assert (entry["name"], entry["state"]) == ("iris", "READY")
    assert client.get("/v2/models/nope/ready").status_code == 404


def test_a_5xx_body_says_the_public_message_and_the_request_id_only(
    home: Path, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    for stored in (home / "artifacts" / "objects").rglob("*"):
        if stored.is_file():
            stored.write_bytes(b"not what was registered")
    with caplog.at_level(logging.WARNING):
        response = client.post("/v2/models/iris/infer", json=ROW, headers={"x-request-id": "r-5"})
    assert response.status_code == 500
    assert response.json() == {
        "error": "a model artifact failed its integrity check (request id r-5)"
    }
    assert str(home) not in response.text
    # The operator still learns which artifact, where, for that request.
    assert "r-5" in caplog.text and str(home / "artifacts") in caplog.text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/runs/55517323332536879154200576", 400),
        ("/v1/runs?limit=55517323332536879154200576", 400),
        ("/v2/models/iris/versions/55517323332536879154200576", 404),
        ("/v2/models/iris:55517323332536879154200576", 404),
        ("/v2/models/iris:55517323332536879154200576/ready", 404),
    ],
)
def test_an_integer_no_database_holds_is_a_4xx(
    client: httpx.Client, path: str, status: int
) -> None:
    response = client.get(path)
    assert response.status_code == status, response.text
    assert "error" in response.json()
