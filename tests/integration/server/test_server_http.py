"""The OIP and OpenAI REST surface over plain HTTP, every error case included."""

from __future__ import annotations

import gzip
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from aimass.app import create_app
from aimass.contract.request import InferRequest
from aimass.contract.runtime import Arrays, Capability
from aimass.errors import AimassError, ErrorCode
from aimass.registry import Registry
from aimass.serving import Engine
from aimass.serving.backend import ThreadBackend
from aimass.serving.executor import Executor
from aimass.serving.router import RegistryRouter
from aimass.serving.scheduler import Schedulers
from aimass.settings import Settings
from aimass.testing.server import serve_in_thread


@pytest.fixture
def client(base_url: str) -> Any:
    with httpx.Client(base_url=base_url, timeout=60) as c:
        yield c


def _infer_body(rows: Any, **extra: Any) -> dict[str, Any]:
    data = np.asarray(rows).tolist()
    return {
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [len(data), 4], "data": data}],
        **extra,
    }


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert "content-encoding" not in response.headers
    body = response.json()
    assert list(body) == ["error"]
    assert isinstance(body["error"], str)
    return str(body["error"])


def test_health_and_server_metadata(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    meta = client.get("/v2").json()
    assert meta["name"] == "aimass"
    assert {"binary_tensor_data", "model_repository"} <= set(meta["extensions"])


def test_model_metadata(client: httpx.Client) -> None:
    meta = client.get("/v2/models/iris").json()
    assert meta == {
        "name": "iris",
        "versions": ["1", "2"],
        "platform": "aimass-sklearn",
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
        ],
    }
    assert client.get("/v2/models/iris/versions/1").json() == meta
    assert client.get("/v2/models/iris@production").json()["name"] == "iris"
    assert client.get("/v2/models/iris-onnx").json()["inputs"][0]["datatype"] == "FP32"


def test_model_ready(client: httpx.Client) -> None:
    assert client.get("/v2/models/iris/ready").json() == {"name": "iris", "ready": True}
    assert client.get("/v2/models/iris/versions/2/ready").status_code == 200


def test_infer_flat_and_nested(client: httpx.Client, iris_x: np.ndarray[Any, Any]) -> None:
    nested = client.post("/v2/models/iris/infer", json=_infer_body(iris_x[:3], id="req-7"))
    assert nested.status_code == 200, nested.text
    body = nested.json()
    assert body["id"] == "req-7"
    assert (body["model_name"], body["model_version"]) == ("iris", "2")
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"] == {
        "name": "label",
        "datatype": "INT64",
        "shape": [3],
        "data": [0, 0, 0],
    }
    assert outputs["probabilities"]["shape"] == [3, 3]
    flat = _infer_body(iris_x[:3])
    flat["inputs"][0]["data"] = iris_x[:3].ravel().tolist()
    again = client.post("/v2/models/iris/infer", json=flat).json()
    assert again["outputs"] == body["outputs"]
    assert "id" not in again


def test_infer_selects_outputs_and_versions(
    client: httpx.Client, iris_x: np.ndarray[Any, Any]
) -> None:
    body = _infer_body(iris_x[50:52], outputs=[{"name": "probabilities"}])
    response = client.post("/v2/models/iris/versions/1/infer", json=body).json()
    assert response["model_version"] == "1"
    assert [o["name"] for o in response["outputs"]] == ["probabilities"]
    by_alias = client.post("/v2/models/iris@production/infer", json=body).json()
    assert (by_alias["model_name"], by_alias["model_version"]) == ("iris", "1")
    assert by_alias["outputs"] == response["outputs"]


def test_every_answer_names_the_version_in_a_header(
    client: httpx.Client, iris_x: np.ndarray[Any, Any]
) -> None:
    body = _infer_body(iris_x[:1])
    for path, expected in (
        ("/v2/models/iris/infer", "iris:2"),
        ("/v2/models/iris@production/infer", "iris:1"),
        ("/v2/models/iris/versions/1/infer", "iris:1"),
    ):
        response = client.post(path, json=body)
        assert response.status_code == 200, response.text
        assert response.headers["x-aimass-version"] == expected
        assert expected == f"iris:{response.json()['model_version']}"
    header = orjson.dumps({"inputs": body["inputs"], "binary_data_output": True})
    binary = client.post(
        "/v2/models/iris/infer",
        content=header,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert binary.status_code == 200, binary.text
    assert binary.headers["x-aimass-version"] == "iris:2"
    embedded = client.post("/v1/embeddings", json={"model": "minilm", "input": "some text"})
    assert embedded.status_code == 200, embedded.text
    assert embedded.headers["x-aimass-version"] == "minilm:1"


def test_infer_onnx_float32(client: httpx.Client, iris_x: np.ndarray[Any, Any]) -> None:
    rows = iris_x[:2].astype(np.float32)
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 4], "data": rows.tolist()}]}
    meta = client.get("/v2/models/iris-onnx").json()
    body["inputs"][0]["name"] = meta["inputs"][0]["name"]
    response = client.post("/v2/models/iris-onnx/infer", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["model_name"] == "iris-onnx"


def test_bytes_json_input(client: httpx.Client, minilm_model: Any) -> None:
    texts = ["hello world", "a second sentence"]
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": texts}]}
    response = client.post("/v2/models/minilm/infer", json=body)
    assert response.status_code == 200, response.text
    (out,) = response.json()["outputs"]
    assert (out["name"], out["datatype"], out["shape"]) == ("embedding", "FP32", [2, 384])
    expected = minilm_model.encode(texts)
    np.testing.assert_allclose(np.array(out["data"]).reshape(2, 384), expected, atol=1e-5)


def test_binary_request_and_response(client: httpx.Client, iris_x: np.ndarray[Any, Any]) -> None:
    rows = np.ascontiguousarray(iris_x[:2])
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP64",
                    "shape": [2, 4],
                    "parameters": {"binary_data_size": rows.nbytes},
                }
            ],
            "outputs": [{"name": "label", "parameters": {"binary_data": True}}],
        }
    )
    response = client.post(
        "/v2/models/iris/infer",
        content=header + rows.tobytes(),
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    meta = orjson.loads(response.content[:length])
    assert meta["outputs"][0]["parameters"] == {"binary_data_size": 16}
    assert np.frombuffer(response.content[length:], dtype="<i8").tolist() == [0, 0]


def test_streamed_body_is_read_whole(client: httpx.Client, iris_x: np.ndarray[Any, Any]) -> None:
    body = orjson.dumps(_infer_body(iris_x[:5]))

    def chunks() -> Any:
        for start in range(0, len(body), 7):
            yield body[start : start + 7]

    streamed = client.post("/v2/models/iris/infer", content=chunks())
    assert streamed.status_code == 200, streamed.text
    whole = client.post("/v2/models/iris/infer", content=body)
    assert streamed.json()["outputs"] == whole.json()["outputs"]
    assert streamed.json()["outputs"][0]["shape"] == [5]


def test_large_success_is_gzipped(client: httpx.Client, iris_x: np.ndarray[Any, Any]) -> None:
    response = client.post(
        "/v2/models/iris/infer", json=_infer_body(iris_x), headers={"Accept-Encoding": "gzip"}
    )
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert len(response.json()["outputs"][0]["data"]) == 150


def test_gzip_request_body(client: httpx.Client, iris_x: np.ndarray[Any, Any]) -> None:
    body = gzip.compress(orjson.dumps(_infer_body(iris_x[:1])))
    response = client.post(
        "/v2/models/iris/infer", content=body, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 200, response.text


BAD_INPUTS: list[tuple[Any, str]] = [
    (b"{not json", "request body is not valid JSON: "),
    (b'["a list"]', "request body must be a JSON object, got list"),
    (
        {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": [1, 2, 3, 4]}]},
        "unknown input 'x'; the model takes ['input']",
    ),
    (
        {
            "inputs": [
                {"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [1, 2, 3, 4]},
                {"name": "x", "datatype": "FP64", "shape": [1, 4], "data": [1, 2, 3, 4]},
            ]
        },
        "unknown input 'x'; the model takes ['input']",
    ),
    (
        {"inputs": [{"name": "input", "datatype": "FP64", "shape": [2, 4], "data": [1, 2, 3]}]},
        "input 'input': shape [2, 4] needs 8 elements, 'data' has 3",
    ),
    (
        {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 3], "data": [1, 2, 3]}]},
        "input 'input': shape [1, 3] does not match the signature's [-1, 4]",
    ),
    (
        {
            "inputs": [
                {"name": "input", "datatype": "DOUBLE", "shape": [1, 4], "data": [1, 2, 3, 4]}
            ]
        },
        "input 'input': unknown datatype 'DOUBLE'",
    ),
    (
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "BYTES",
                    "shape": [1, 4],
                    "data": ["a", "b", "c", "d"],
                }
            ]
        },
        "input 'input': expected FP64, got text",
    ),
    (
        {
            "inputs": [
                {"name": "input", "datatype": "FP64", "shape": [1, 4], "data": ["a", 1, 2, 3]}
            ]
        },
        "input 'input': FP64 data must be numbers, found strings",
    ),
    (
        {
            "inputs": [
                {"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [1, 2, 3, 4]}
            ],
            "outputs": [{"name": "logits"}],
        },
        "unknown output(s) ['logits']",
    ),
    ({"inputs": []}, "'inputs' must be a non-empty list of tensors"),
]


@pytest.mark.parametrize(("body", "message"), BAD_INPUTS)
def test_client_mistakes_are_400_naming_the_field(
    client: httpx.Client, body: Any, message: str
) -> None:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    response = client.post("/v2/models/iris/infer", content=content)
    assert message in _error(response, 400)


def test_binary_byte_lengths_are_400(client: httpx.Client) -> None:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP64",
                    "shape": [1, 4],
                    "parameters": {"binary_data_size": 24},
                }
            ]
        }
    )
    response = client.post(
        "/v2/models/iris/infer",
        content=header + b"\0" * 24,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert _error(response, 400) == (
        "input 'input': binary_data_size is 24 bytes but shape [1, 4] of FP64 needs 32"
    )
    response = client.post(
        "/v2/models/iris/infer", content=header, headers={"Inference-Header-Content-Length": "x"}
    )
    assert "Inference-Header-Content-Length must be an integer" in _error(response, 400)


def test_unknown_model_or_version_is_404(
    client: httpx.Client, iris_x: np.ndarray[Any, Any]
) -> None:
    body = _infer_body(iris_x[:1])
    assert "'nope'" in _error(client.post("/v2/models/nope/infer", json=body), 404)
    assert _error(client.get("/v2/models/nope"), 404)
    assert _error(client.get("/v2/models/nope/ready"), 404)
    assert _error(client.post("/v2/models/iris/versions/9/infer", json=body), 404)
    assert _error(client.get("/v2/models/iris/versions/abc"), 404) == (
        "model 'iris' has no version 'abc'"
    )
    assert _error(client.get("/v2/models/iris@staging"), 404)
    assert _error(client.get("/v2/nowhere"), 404) == "no route GET /v2/nowhere"


def test_wrong_method_is_405(client: httpx.Client) -> None:
    response = client.get("/v2/models/iris/infer")
    assert _error(response, 405) == "GET is not allowed on /v2/models/iris/infer; use POST"
    assert response.headers["allow"] == "POST"
    openai = client.get("/v1/embeddings")
    assert openai.status_code == 405
    assert openai.json()["error"]["code"] == "method_not_allowed"


def test_oversize_body_is_413(client: httpx.Client, server_settings: Settings) -> None:
    max_body = server_settings.server.max_body_bytes
    response = client.post("/v2/models/iris/infer", content=b" " * (max_body + 1))
    assert _error(response, 413) == f"request body is larger than the limit of {max_body} bytes"

    def chunks() -> Any:
        for _ in range(3):
            yield b" " * (max_body // 2)

    streamed = client.post("/v2/models/iris/infer", content=chunks())
    assert streamed.status_code == 413
    bomb = gzip.compress(b" " * (max_body * 2))
    response = client.post(
        "/v2/models/iris/infer", content=bomb, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 413


def test_server_still_serves_after_errors(
    client: httpx.Client, iris_x: np.ndarray[Any, Any]
) -> None:
    for body, _ in BAD_INPUTS:
        client.post(
            "/v2/models/iris/infer", content=body if isinstance(body, bytes) else orjson.dumps(body)
        )
    response = client.post("/v2/models/iris/infer", json=_infer_body(iris_x[:1]))
    assert response.status_code == 200
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_repository_extension(client: httpx.Client) -> None:
    index = client.post("/v2/repository/index").json()
    names = {entry["name"] for entry in index}
    assert {"iris", "iris-onnx", "minilm"} <= names
    assert all(
        e["state"] == "READY"
        for e in client.post("/v2/repository/index", json={"ready": True}).json()
    )
    assert client.post("/v2/repository/models/iris-onnx/unload").json() == {
        "name": "iris-onnx",
        "unload": True,
    }
    unloaded = {e["name"]: e for e in client.post("/v2/repository/index").json()}["iris-onnx"]
    assert unloaded == {
        "name": "iris-onnx",
        "version": "1",
        "state": "UNAVAILABLE",
        "reason": "not loaded",
    }
    assert client.get("/v2/models/iris-onnx/ready").status_code == 503
    assert client.post("/v2/repository/models/iris-onnx/load").status_code == 200
    assert client.get("/v2/models/iris-onnx/ready").json()["ready"] is True
    assert _error(client.post("/v2/repository/models/nope/load"), 404)


def test_openapi_describes_everything(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    for path in [
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/versions/{version}/infer",
        "/v2/repository/index",
        "/v2/repository/models/{name}/load",
        "/v1/models",
        "/v1/embeddings",
    ]:
        assert path in document["paths"]


def test_openai_errors(client: httpx.Client) -> None:
    response = client.post("/v1/embeddings", json={"model": "iris", "input": "hi"})
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "model 'iris' is not an embedding model (its task is classification)",
            "type": "invalid_request_error",
            "param": "model",
            "code": "invalid_input",
        }
    }
    missing = client.post("/v1/embeddings", json={"model": "nope", "input": "hi"})
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    bad = client.post("/v1/embeddings", content=b"{")
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
    tokens = client.post("/v1/embeddings", json={"model": "minilm", "input": [[1, 2]]})
    assert tokens.status_code == 400 and tokens.json()["error"]["param"] == "input"


class _Failing:
    """A scheduler whose every request fails with ``error``."""

    overruns = 0
    stalled = False

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def submit(self, request: InferRequest) -> Arrays:
        raise self.error

    async def close(self) -> None:
        return None


def _failing_engine(registry: Registry, settings: Settings, error: Exception) -> Engine:
    """The real engine, router and backend, with schedulers that fail every request."""
    return Engine(
        settings.serving,
        router=RegistryRouter(registry, Executor(1)),
        backend=ThreadBackend(registry.load, threads=1, load_threads=1),
        schedulers=Schedulers(dict.fromkeys(Capability, lambda model: _Failing(error))),
    )


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (
            AimassError(ErrorCode.OVERLOADED, "model iris:2 has 1024 requests queued"),
            503,
            "model iris:2 has 1024 requests queued (request id rid-1)",
        ),
        (
            RuntimeError("secret detail /path/to/worker.py"),
            500,
            "internal server error (request id rid-1)",
        ),
    ],
)
def test_overload_and_bugs(
    server_settings: Settings,
    server_registry: Registry,
    error: Exception,
    status: int,
    message: str,
    iris_x: np.ndarray[Any, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = server_settings.model_copy(
        update={"server": server_settings.server.model_copy(update={"models": []})}
    )
    engine = _failing_engine(server_registry, settings, error)
    app = create_app(settings, engine=engine, registry=server_registry)
    with serve_in_thread(app) as url, httpx.Client(base_url=url) as c:
        response = c.post(
            "/v2/models/iris/infer", json=_infer_body(iris_x[:1]), headers={"X-Request-ID": "rid-1"}
        )
        assert _error(response, status) == message
        assert response.headers["x-request-id"] == "rid-1"
        assert ("retry-after" in response.headers) == (status == 503)
        embed = c.post(
            "/v1/embeddings",
            json={"model": "minilm", "input": "x"},
            headers={"X-Request-ID": "rid-1"},
        )
        assert embed.status_code == status
        assert embed.json()["error"]["message"] == message
    if status == 500:
        assert "secret detail" in caplog.text and "rid-1" in caplog.text
