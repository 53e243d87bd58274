"""The three request shapes bench/serve.py measures, for the server and for the raw model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."
CONNECTIONS = (1, 32)


@dataclass(frozen=True)
class Workload:
    """One request shape: what the server gets and what the raw model gets."""

    key: str
    model: str
    path: str
    body: bytes
    kind: str  # "tiny", "mlp" or "embedding": which target applies


def _digits_row() -> list[float]:
    # Pixel intensities 0..16 like sklearn's digits; the values do not matter.
    return [float((i * 7) % 17) for i in range(64)]


def _oip(datatype: str, shape: list[int], data: list[float]) -> bytes:
    tensor = {"name": "input", "datatype": datatype, "shape": shape, "data": data}
    return json.dumps({"inputs": [tensor]}, separators=(",", ":")).encode()


WORKLOADS = (
    Workload(
        "iris",
        "iris",
        "/v2/models/iris/infer",
        _oip("FP64", [1, 4], [5.1, 3.5, 1.4, 0.2]),
        "tiny",
    ),
    Workload(
        "digits-mlp",
        "digits-mlp",
        "/v2/models/digits-mlp/infer",
        _oip("FP32", [1, 64], _digits_row()),
        "mlp",
    ),
    Workload(
        "minilm",
        "minilm",
        "/v1/embeddings",
        json.dumps({"model": "minilm", "input": SENTENCE}, separators=(",", ":")).encode(),
        "embedding",
    ),
)
MODELS = [w.model for w in WORKLOADS]


def raw_inputs(key: str, rows: int) -> dict[str, Any]:
    import numpy as np

    if key == "iris":
        return {"input": np.tile(np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float64), (rows, 1))}
    if key == "digits-mlp":
        return {"input": np.tile(np.array([_digits_row()], dtype=np.float32), (rows, 1))}
    return {"text": np.array([SENTENCE] * rows, dtype=object)}
