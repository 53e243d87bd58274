"""The official clients, with their defaults, against the real server."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from aimass.deployments.spec import WHOLE, DeploymentSpec, Target
from aimass.deployments.store import DeploymentStore
from aimass.registry import Registry


@pytest.fixture
def triton(base_url: str) -> Any:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=base_url.removeprefix("http://"))
    yield client
    client.close()


def test_tritonclient_health_and_metadata(triton: Any) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]
    assert triton.is_model_ready("iris")
    meta = triton.get_model_metadata("iris")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_infer(triton: Any, iris_x: np.ndarray[Any, Any], binary: bool) -> None:
    import tritonclient.http as httpclient

    rows = np.ascontiguousarray(iris_x[48:53])
    tensor = httpclient.InferInput("input", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("probabilities", binary_data=binary)]
    result = triton.infer("iris", [tensor], outputs=outputs, request_id="t-1")
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (5, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        "iris",
        "2",
        "t-1",
    )


def test_tritonclient_defaults_all_outputs_binary(
    triton: Any, iris_x: np.ndarray[Any, Any]
) -> None:
    import tritonclient.http as httpclient

    rows = np.ascontiguousarray(iris_x[:2])
    tensor = httpclient.InferInput("input", [2, 4], "FP64")
    tensor.set_data_from_numpy(rows)
    result = triton.infer("iris", [tensor], model_version="1")
    assert result.as_numpy("label").tolist() == [0, 0]
    assert result.as_numpy("probabilities").shape == (2, 3)


def test_tritonclient_bytes(triton: Any, minilm_model: Any) -> None:
    import tritonclient.http as httpclient

    texts = np.array([b"the quick brown fox", "héllo".encode()], dtype=object)
    tensor = httpclient.InferInput("text", [2], "BYTES")
    tensor.set_data_from_numpy(texts)
    result = triton.infer("minilm", [tensor])
    expected = minilm_model.encode(["the quick brown fox", "héllo"])
    np.testing.assert_allclose(result.as_numpy("embedding"), expected, atol=1e-5)


def test_tritonclient_errors_and_repository(triton: Any, iris_x: np.ndarray[Any, Any]) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    tensor = httpclient.InferInput("input", [1, 3], "FP64")
    tensor.set_data_from_numpy(np.ascontiguousarray(iris_x[:1, :3]))
    with pytest.raises(InferenceServerException, match=r"shape \[1, 3\] does not match"):
        triton.infer("iris", [tensor])
    with pytest.raises(InferenceServerException, match="not found"):
        triton.get_model_metadata("nope")
    names = {entry["name"] for entry in triton.get_model_repository_index()}
    assert "iris" in names
    triton.load_model("iris-onnx")
    assert triton.is_model_ready("iris-onnx")


@pytest.fixture
def openai_client(base_url: str) -> Any:
    import openai

    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as client:
        yield client


@pytest.mark.parametrize("encoding", [None, "float", "base64"])
def test_openai_embeddings(openai_client: Any, minilm_model: Any, encoding: str | None) -> None:
    texts = ["aimass serves models", "embeddings over HTTP"]
    kwargs = {} if encoding is None else {"encoding_format": encoding}
    response = openai_client.embeddings.create(model="minilm", input=texts, **kwargs)
    expected = minilm_model.encode(texts)
    assert response.model == "minilm"
    assert [d.index for d in response.data] == [0, 1]
    if encoding == "base64":
        import base64

        got = np.stack([np.frombuffer(base64.b64decode(d.embedding), "<f4") for d in response.data])
    else:
        got = np.array([d.embedding for d in response.data])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert response.usage.prompt_tokens == 6


def test_openai_single_string_and_models(openai_client: Any, minilm_model: Any) -> None:
    response = openai_client.embeddings.create(model="minilm", input="one text")
    np.testing.assert_allclose(
        response.data[0].embedding, minilm_model.encode("one text"), atol=1e-5
    )
    ids = {m.id for m in openai_client.models.list()}
    assert {"iris", "iris-onnx", "minilm"} <= ids
    assert openai_client.models.retrieve("minilm").id == "minilm"


def test_openai_client_errors(openai_client: Any) -> None:
    import openai

    with pytest.raises(openai.BadRequestError, match="not an embedding model"):
        openai_client.embeddings.create(model="iris", input="x")
    with pytest.raises(openai.NotFoundError):
        openai_client.embeddings.create(model="nope", input="x")


def test_the_official_clients_call_a_deployment_unchanged(
    triton: Any,
    openai_client: Any,
    server_registry: Registry,
    iris_x: np.ndarray[Any, Any],
    minilm_model: Any,
) -> None:
    import tritonclient.http as httpclient

    store = DeploymentStore(server_registry.database)
    for name, ref in [("web-iris", "iris@production"), ("web-minilm", "minilm:1")]:
        store.create(name, DeploymentSpec(targets=(Target(ref=ref, weight=WHOLE),)), by="test")
    try:
        deadline = time.monotonic() + 10
        while not (triton.is_model_ready("web-iris") and triton.is_model_ready("web-minilm")):
            assert time.monotonic() < deadline, "the deployments were not served within 10 s"
            time.sleep(0.05)
        rows = np.ascontiguousarray(iris_x[48:53])
        tensor = httpclient.InferInput("input", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows)
        result = triton.infer("web-iris", [tensor])
        direct = triton.infer("iris", [tensor], model_version="1")
        assert result.get_response()["model_version"] == "1"  # what production points at
        np.testing.assert_array_equal(
            result.as_numpy("probabilities"), direct.as_numpy("probabilities")
        )
        raw = openai_client.embeddings.with_raw_response.create(model="web-minilm", input="a text")
        assert raw.headers["x-aimass-version"] == "minilm:1"
        np.testing.assert_allclose(
            raw.parse().data[0].embedding, minilm_model.encode("a text"), atol=1e-5
        )
    finally:
        for name in ("web-iris", "web-minilm"):
            store.delete(name, by="test")
