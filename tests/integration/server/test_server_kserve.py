"""The ``kserve`` SDK's REST client (Open Inference Protocol v2) against the real server."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest

kserve = pytest.importorskip("kserve", reason="the kserve SDK is part of the dev extra")


def _client() -> Any:
    return kserve.InferenceRESTClient(kserve.RESTConfig(protocol="v2", retries=0, timeout=30))


def test_kserve_client_health_and_readiness(base_url: str) -> None:
    async def check() -> tuple[bool, bool, bool]:
        async with _client() as client:
            return (
                await client.is_server_live(base_url),
                await client.is_server_ready(base_url),
                await client.is_model_ready(base_url, "iris-onnx"),
            )

    assert asyncio.run(check()) == (True, True, True)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_kserve_client_infer(base_url: str, iris_x: np.ndarray[Any, Any], binary: bool) -> None:
    from aimass.testing.models import iris_classifier

    rows = iris_x[:5]
    features = kserve.InferInput("input", list(rows.shape), "FP64")
    features.set_data_from_numpy(rows, binary_data=binary)
    request = kserve.InferRequest(model_name="iris", infer_inputs=[features], request_id="r-1")

    async def infer() -> Any:
        async with _client() as client:
            return await client.infer(base_url, request, model_name="iris")

    response = asyncio.run(infer())
    assert response.model_name == "iris" and response.id == "r-1"
    labels = {o.name: o for o in response.outputs}["label"].as_numpy()
    np.testing.assert_array_equal(labels, iris_classifier()[0].predict(rows))


def test_kserve_client_reads_error_strings(base_url: str) -> None:
    features = kserve.InferInput("wrong", [1, 4], "FP64")
    features.set_data_from_numpy(np.zeros((1, 4)))
    request = kserve.InferRequest(model_name="iris", infer_inputs=[features])

    async def infer() -> Any:
        async with _client() as client:
            return await client.infer(base_url, request, model_name="iris")

    with pytest.raises(httpx.HTTPStatusError) as failed:
        asyncio.run(infer())
    assert failed.value.response.status_code == 400
    assert "input" in str(failed.value)
