"""The casting rule over HTTP: lossless widening is served, anything that can lose is a 400."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest


def _body(name: str, rows: np.ndarray[Any, Any], datatype: str) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": name, "datatype": datatype, "shape": list(rows.shape), "data": rows.tolist()}
        ]
    }


def _probabilities(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return {o["name"]: o["data"] for o in response.json()["outputs"]}["probabilities"]


def _onnx_input(base_url: str) -> str:
    return str(httpx.get(f"{base_url}/v2/models/iris-onnx").json()["inputs"][0]["name"])


def test_fp32_to_an_fp64_input_is_widened(base_url: str, iris_x: np.ndarray[Any, Any]) -> None:
    rows = iris_x[:3]
    url = f"{base_url}/v2/models/iris/infer"
    as_fp32 = _probabilities(httpx.post(url, json=_body("input", rows.astype(np.float32), "FP32")))
    widened = rows.astype(np.float32).astype(np.float64)
    assert as_fp32 == _probabilities(httpx.post(url, json=_body("input", widened, "FP64")))


@pytest.mark.parametrize(
    ("model", "sent", "expected"),
    [("iris", "INT64", "FP64"), ("iris-onnx", "FP64", "FP32"), ("iris", "BYTES", "FP64")],
)
def test_lossy_casts_are_400_naming_input_and_both_datatypes(
    base_url: str, iris_x: np.ndarray[Any, Any], model: str, sent: str, expected: str
) -> None:
    name = "input" if model == "iris" else _onnx_input(base_url)
    rows: Any = iris_x[:2]
    if sent == "INT64":
        rows = rows.round().astype(np.int64)
    if sent == "BYTES":
        rows = rows.astype(str)
    response = httpx.post(f"{base_url}/v2/models/{model}/infer", json=_body(name, rows, sent))
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    got = "text (BYTES)" if sent == "BYTES" else sent
    assert message.startswith(f"input '{name}': expected {expected}, got {got}")


def test_binary_tensors_follow_the_same_rule(base_url: str, iris_x: np.ndarray[Any, Any]) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(base_url.removeprefix("http://"))
    try:
        name = _onnx_input(base_url)
        tensor = triton.InferInput(name, [2, 4], "FP64")
        tensor.set_data_from_numpy(iris_x[:2], binary_data=True)
        with pytest.raises(InferenceServerException, match=f"'{name}': expected FP32, got FP64"):
            client.infer("iris-onnx", [tensor])
        tensor = triton.InferInput(name, [2, 4], "FP32")
        tensor.set_data_from_numpy(iris_x[:2].astype(np.float32), binary_data=True)
        assert client.infer("iris-onnx", [tensor]).as_numpy("probabilities") is not None
    finally:
        client.close()
