"""A slow model behind a real server: timed-out requests free the queue, other models still answer.

The slow model is a :class:`~aimass.PythonModel` whose predict sleeps for
:attr:`Sleeper.seconds` (zero while registering); its requests carry an OIP
timeout far shorter than that, so every call of it overruns. The slow
embedder sleeps as long, so that its queue fills through either protocol.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import pytest

from aimass import PythonModel
from aimass.app import create_app
from aimass.contract.runtime import Arrays
from aimass.registry import Registry
from aimass.serving.batcher import STALLED_AFTER
from aimass.settings import Settings
from aimass.testing.models import iris_classifier
from aimass.testing.server import serve_in_thread

QUEUE = 4
SLEEP = 3.0
ROW = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [5, 3, 1, 0]}]}
SHORT = {
    "inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 1], "data": [1]}],
    "parameters": {"timeout": 200_000},  # microseconds
}


class Sleeper(PythonModel):
    """Answers its input after ``seconds`` of sleep."""

    code_paths = (__file__,)
    seconds: ClassVar[float] = 0.0

    def predict(self, inputs: Arrays) -> Arrays:
        time.sleep(Sleeper.seconds)
        return {"y": inputs["x"]}


class SlowEmbedder(PythonModel):
    """Embeds each text as ``[1, 1]`` after :attr:`Sleeper.seconds` of sleep."""

    code_paths = (__file__,)

    def predict(self, inputs: Arrays) -> Arrays:
        time.sleep(Sleeper.seconds)
        return {"embedding": np.ones((len(inputs["text"]), 2))}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    registry = Registry.from_settings(Settings(home=tmp_path))
    try:
        clf, x = iris_classifier()
        registry.register(clf, "iris", sample_input=x[:2])
        registry.register(Sleeper(), "sleeper", sample_input={"x": np.ones((1, 1))})
        text = {"text": np.array(["a"], dtype=object)}
        registry.register(SlowEmbedder(), "embedder", sample_input=text, task="embedding")
    finally:
        registry.close()
    return tmp_path


def _serve(home: Path, *startup: str, **serving: Any) -> Iterator[httpx.Client]:
    settings = Settings.model_validate(
        {"home": home, "serving": {"max_delay_ms": 0, **serving}, "server": {"models": startup}}
    )
    registry = Registry.from_settings(settings)
    try:
        with (
            serve_in_thread(create_app(settings, registry=registry, allow_missing=True)) as url,
            httpx.Client(base_url=url, timeout=30) as client,
        ):
            yield client
    finally:
        registry.close()


@pytest.fixture
def slow(home: Path) -> Iterator[httpx.Client]:
    Sleeper.seconds = SLEEP
    try:
        yield from _serve(home, "sleeper", "iris", queue_size=QUEUE, executor_threads=2)
    finally:
        Sleeper.seconds = 0.0


def test_timed_out_requests_free_the_queue_and_overruns_show(slow: httpx.Client) -> None:
    with ThreadPoolExecutor(QUEUE + 2) as pool:
        burst = list(
            pool.map(lambda _: slow.post("/v2/models/sleeper/infer", json=SHORT), range(QUEUE + 2))
        )
    assert {r.status_code for r in burst} <= {503, 504}
    # Nobody waits any more: each next request is queued (and times out), not refused as full.
    for _ in range(STALLED_AFTER):
        started = time.monotonic()
        after = slow.post("/v2/models/sleeper/infer", json=SHORT)
        assert after.status_code == 504, after.text
        assert time.monotonic() - started < SLEEP / 2
    # Another model is not starved by the calls still sleeping.
    started = time.monotonic()
    assert slow.post("/v2/models/iris/infer", json=ROW).status_code == 200
    assert time.monotonic() - started < SLEEP / 2
    entry = {e["name"]: e for e in slow.post("/v2/repository/index").json()}["sleeper"]
    assert entry["overruns"] >= STALLED_AFTER
    assert entry["reason"].startswith("stalled")
    assert slow.get("/v2/models/sleeper/ready").status_code == 503
    assert slow.get("/v2/models/iris/ready").status_code == 200
    # A start-up model that only times out makes the server not ready.
    assert slow.get("/v2/health/ready").status_code == 503


def test_the_server_is_not_ready_while_its_startup_model_cannot_load(home: Path) -> None:
    for stored in (home / "artifacts" / "objects").rglob("*"):
        if stored.is_file():
            stored.write_bytes(b"not what was registered")
    for client in _serve(home, "iris"):
        ready = client.get("/v2/health/ready")
        assert (ready.status_code, ready.json()) == (503, {"ready": False})
        assert client.get("/v2/health/live").status_code == 200


def test_the_server_is_ready_once_its_startup_models_serve(home: Path) -> None:
    for client in _serve(home, "iris"):
        assert client.get("/v2/health/ready").json() == {"ready": True}


TEXT = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}
LEAVING = {  # a request to the embedder, by protocol, with the default (long) deadline
    "oip": ("/v2/models/embedder/infer", TEXT),
    "openai": ("/v1/embeddings", {"model": "embedder", "input": "a"}),
}


def _send(url: str, path: str, document: object) -> socket.socket:
    """A connection that has sent one POST of ``document``, its answer not read."""
    body = json.dumps(document).encode()
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nhost: x\r\n".encode()
        + b"content-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    return sock


def _short(client: httpx.Client) -> int:
    """The status of an embedder request that waits at most 0.2 s."""
    short = {**TEXT, "parameters": SHORT["parameters"]}
    return client.post("/v2/models/embedder/infer", json=short).status_code


@pytest.mark.parametrize("protocol", sorted(LEAVING))
def test_a_request_whose_client_left_frees_its_slot(home: Path, protocol: str) -> None:
    path, document = LEAVING[protocol]
    Sleeper.seconds = 3 * SLEEP
    try:
        serving = {"queue_size": 1, "admission_wait_ms": 0, "max_batch_size": 1}
        for client in _serve(home, "embedder", **serving):
            url = str(client.base_url).rstrip("/")
            deadline = time.monotonic() + SLEEP
            held = [_send(url, path, document)]
            # Queued behind it and timed out: the first runs (and sleeps) now.
            while _short(client) != 504:
                assert time.monotonic() < deadline, "the first request never ran"
            # Refused: the second holds the only slot (one sent again if a probe came first).
            held.append(_send(url, path, document))
            while (status := _short(client)) != 503:
                assert status == 504 and time.monotonic() < deadline, status
                held.append(_send(url, path, document))
            for sock in held:
                sock.close()  # every client leaves
            deadline = time.monotonic() + SLEEP
            while (status := _short(client)) != 504:
                assert status == 503, status
                assert time.monotonic() < deadline, "the slot of a client that left stayed taken"
    finally:
        Sleeper.seconds = 0.0
