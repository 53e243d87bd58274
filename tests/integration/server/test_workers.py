"""``aimass serve --workers N``: a dead worker is replaced, SIGTERM drains every worker.

The servers are real ``aimass serve`` processes over a SQLite registry. The
slow model is a :class:`~aimass.runtimes.custom.PythonModel` whose predict
holds each request until the test opens a gate (a file), so the test knows
which requests are inside a worker when it signals the supervisor.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from aimass.gateway.keys import KeyStore
from aimass.registry import Registry
from aimass.roles import Role
from aimass.server.identity import WORKER_HEADER
from aimass.settings import Settings
from aimass.testing.models import iris_classifier
from aimass.testing.server import ServeProcess, serve_in_process

pytestmark = pytest.mark.slow  # every test starts aimass serve --workers 2

GATED_MODELS = 8
_GATE_ENV = "GATED_MODEL_DIR"  # read by the test model only

_GATED_MODULE = """
'''Doubles its input once the test opens the gate: a request held in flight.'''

import os
import time
from pathlib import Path

import numpy as np

from aimass.runtimes.custom import PythonModel


class GatedDoubler(PythonModel):
    code_paths = [__file__]

    def predict(self, inputs):
        x = inputs["x"]
        gate = os.environ.get("GATED_MODEL_DIR")
        if gate:  # unset while registering: the sample runs at once
            for value in x[:, 0]:
                Path(gate, f"started-{int(value)}").write_text(str(os.getpid()))
            # Simulated work that lasts until the test ends it (bounded).
            deadline = time.monotonic() + 60
            while not Path(gate, "open").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        return {"y": x * 2}
"""


@pytest.fixture(scope="module")
def workers_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("workers-home")
    module_name = "aimass_test_gated_doubler"
    source = home / f"{module_name}.py"
    source.write_text(_GATED_MODULE, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(module_name, source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    registry = Registry.from_settings(Settings(home=home))
    try:
        clf, x = iris_classifier()
        registry.register(clf, "iris", sample_input=x[:2])
        sample = {"x": np.arange(4, dtype=np.float64).reshape(2, 2)}
        for index in range(GATED_MODELS):
            registry.register(module.GatedDoubler(), f"gated-{index}", sample_input=sample)
    finally:
        registry.close()
        del sys.modules[module_name]
    return home


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    directory = tmp_path / "gate"
    directory.mkdir()
    return directory


@pytest.fixture
def env(workers_home: Path, gate: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AIMASS_HOME": str(workers_home),
        _GATE_ENV: str(gate),
        # Every held request needs a thread of its own.
        "AIMASS_SERVING__EXECUTOR_THREADS": str(GATED_MODELS + 2),
    }


def _fresh_client(url: str) -> httpx.Client:
    # No keep-alive: every request is a new connection, which any worker may accept.
    return httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0))


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(child) for child in (task / "children").read_text().split())
    return found


def _iris(client: httpx.Client) -> httpx.Response:
    body = {
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5, 3, 1, 0]}]
    }
    return client.post("/v2/models/iris/infer", json=body)


def _workers_answering(client: httpx.Client, expected: set[int], limit: int = 400) -> set[int]:
    """Send requests until every pid in ``expected`` has answered; the pids seen."""
    seen: set[int] = set()
    for _ in range(limit):
        response = _iris(client)
        assert response.status_code == 200, response.text
        seen.add(int(response.headers[WORKER_HEADER]))
        if expected <= seen:
            break
    return seen


@pytest.fixture
def two_workers(env: dict[str, str]) -> Iterator[ServeProcess]:
    # With --allow-missing, a start-up model that cannot load does not keep the others from serving.
    args = ["--workers", "2", "-m", "iris", "-m", "no-such-model", "--allow-missing"]
    with serve_in_process(args, env=env) as served:
        yield served


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads worker pids from /proc")
def test_a_killed_worker_is_replaced_and_no_request_fails(two_workers: ServeProcess) -> None:
    supervisor = two_workers.process.pid
    workers = _children(supervisor)
    assert len(workers) == 2
    with _fresh_client(two_workers.url) as client:
        assert _workers_answering(client, workers) == workers
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        # Every request from here on must succeed: the survivor answers until
        # the replacement (forked from the supervisor) is serving too.
        replacement: set[int] = set()
        deadline = time.monotonic() + 60
        while not replacement:
            assert time.monotonic() < deadline, "no replacement worker answered"
            response = _iris(client)
            assert response.status_code == 200, response.text
            replacement = {int(response.headers[WORKER_HEADER])} - workers
        current = _children(supervisor)
        assert victim not in current and replacement <= current and len(current) == 2
        results = [_iris(client) for _ in range(40)]
        assert [r.status_code for r in results] == [200] * 40
        assert {r.json()["outputs"][0]["data"][0] for r in results} == {0}
    code, stderr = two_workers.stop()
    assert code == 0, stderr
    assert f"worker {victim} exited with signal SIGKILL" in stderr
    assert "could not preload model no-such-model" in stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads worker pids from /proc")
def test_keep_alive_clients_reach_a_replaced_worker(env: dict[str, str]) -> None:
    # Each connection is asked to reconnect every 10 requests; where it lands is the
    # kernel's choice, so the bound allows 30 reconnects per client (2 to 4 sufficed).
    clients, rounds = 8, 300
    env = {**env, "AIMASS_SERVER__KEEPALIVE_REQUESTS": "10"}
    with (
        serve_in_process(["--workers", "2", "-m", "iris"], env=env) as served,
        contextlib.ExitStack() as stack,
    ):
        supervisor = served.process.pid
        workers = _children(supervisor)
        # Keep-alive clients, each holding one connection to whichever worker took it.
        pool = [
            stack.enter_context(httpx.Client(base_url=served.url, timeout=30))
            for _ in range(clients)
        ]

        def answered_by(client: httpx.Client) -> int:
            for _ in range(3):  # a connection the dead worker held may fail once
                try:
                    response = _iris(client)
                except httpx.TransportError:
                    continue
                assert response.status_code == 200, response.text
                return int(response.headers[WORKER_HEADER])
            raise AssertionError("three requests in a row failed")

        for client in pool:
            answered_by(client)
        os.kill(min(workers), signal.SIGKILL)
        # The clients keep sending; those the dead worker held reconnect at once,
        # before its replacement serves, so only spreading can bring them over.
        seen: set[int] = set()
        for _ in range(rounds):
            seen.update(answered_by(client) for client in pool)
            if seen - workers:
                break
        assert seen - workers, f"after {rounds * clients} requests only {seen} answered"
        assert seen - workers <= _children(supervisor)


def _started(gate: Path) -> dict[int, int]:
    """Request number -> pid of the worker holding it, from the model's marker files."""
    held = {}
    for marker in gate.glob("started-*"):
        text = marker.read_text()
        if text:  # a marker is written in one call, but may be seen half-written
            held[int(marker.name.removeprefix("started-"))] = int(text)
    return held


def _infer_gated(url: str, index: int) -> httpx.Response:
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [index, 1]}]}
    with _fresh_client(url) as client:
        return client.post(f"/v2/models/gated-{index}/infer", json=body)


def _wait_until(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        event.wait(0.01)  # a polling interval, not a wait for the outcome


def test_sigterm_lets_requests_in_flight_in_every_worker_finish(
    env: dict[str, str], gate: Path
) -> None:
    with serve_in_process(["--workers", "2"], env=env) as served:
        supervisor = served.process.pid
        calls: dict[int, Future[httpx.Response]] = {}
        with ThreadPoolExecutor(GATED_MODELS) as pool:
            # One request per model, each held inside its model, until both
            # workers hold at least one (each request is a new connection, so
            # either worker may take it).
            for index in range(GATED_MODELS):
                calls[index] = pool.submit(_infer_gated, served.url, index)
                _wait_until(lambda i=index: i in _started(gate), f"request {index} is held")
                if len(set(_started(gate).values())) == 2 and index >= 3:
                    break
            held = _started(gate)
            assert set(held) == set(calls)
            assert set(held.values()) == _children(supervisor), "both workers hold requests"

            served.process.send_signal(signal.SIGTERM)

            # The workers stop listening once they have the signal; only then
            # is the gate opened, so the held requests finish during the drain.
            def refused() -> bool:
                try:
                    httpx.get(f"{served.url}/v2/health/live", timeout=5)
                except httpx.TransportError:
                    return True
                return False

            _wait_until(refused, "the workers stop accepting connections")
            assert served.process.poll() is None, "the supervisor waits for the drain"
            (gate / "open").touch()
            responses = {index: call.result(timeout=60) for index, call in calls.items()}
        # Already stopping: a second SIGTERM (as stop() sends) would kill the workers.
        _, stderr = served.process.communicate(timeout=60)
        code = served.process.returncode
    for index, response in responses.items():
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [2 * index, 2]
    assert code == 0, stderr
    assert "Traceback" not in stderr


def test_xgboost_and_lightgbm_loaded_before_the_fork_answer_from_every_worker(
    tmp_path: Path,
) -> None:
    # Both run OpenMP thread pools, which do not survive a fork that happens
    # while they are running: the workers must build their own.
    import lightgbm
    import xgboost
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    models: dict[str, Any] = {
        "xgb": xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(x, y),
        "lgbm": lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(x, y),
    }
    registry = Registry.from_settings(Settings(home=tmp_path))
    try:
        for name, model in models.items():
            registry.register(model, name, sample_input=x[:4])
    finally:
        registry.close()
    env = {**os.environ, "AIMASS_HOME": str(tmp_path)}

    with (
        serve_in_process(["--workers", "2", "-m", "xgb", "-m", "lgbm"], env=env) as served,
        _fresh_client(served.url) as client,
    ):

        def infer(name: str, start: int) -> tuple[int, Any, int]:
            rows = x[start : start + 3]
            body = {
                "inputs": [
                    {"name": "input", "shape": [3, 30], "datatype": "FP64", "data": rows.tolist()}
                ]
            }
            response = client.post(f"/v2/models/{name}/infer", json=body)
            assert response.status_code == 200, response.text
            outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
            return start, outputs, int(response.headers[WORKER_HEADER])

        for name, model in models.items():
            workers: set[int] = set()
            # Rounds of concurrent requests until both workers have answered.
            for _ in range(10):
                with ThreadPoolExecutor(8) as pool:
                    answers = list(pool.map(lambda s, n=name: infer(n, s), range(0, 120, 3)))
                for start, outputs, worker in answers:
                    rows = x[start : start + 3]
                    np.testing.assert_array_equal(outputs["label"], model.predict(rows))
                    np.testing.assert_allclose(
                        np.reshape(outputs["probabilities"], (3, 2)),
                        model.predict_proba(rows),
                        rtol=1e-6,
                    )
                    workers.add(worker)
                if len(workers) == 2:
                    break
            assert len(workers) == 2, name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
def test_a_torch_model_served_by_its_plan_loads_no_torch_in_any_process(tmp_path: Path) -> None:
    import torch

    from aimass.testing.torch_models import DigitsMLP

    torch.manual_seed(0)
    module = DigitsMLP(hidden=32).eval()
    rows = torch.rand(6, 64)
    registry = Registry.from_settings(Settings(home=tmp_path))
    try:
        info = registry.register(module, "mlp", sample_input=rows)
    finally:
        registry.close()
    assert "onnx_plan" in info.manifest.options
    with torch.inference_mode():
        expected = module(rows).numpy()
    env = {**os.environ, "AIMASS_HOME": str(tmp_path)}
    body = {
        "inputs": [{"name": "input", "shape": [6, 64], "datatype": "FP32", "data": rows.tolist()}]
    }

    with (
        serve_in_process(["--workers", "2", "-m", "mlp"], env=env) as served,
        _fresh_client(served.url) as client,
    ):
        workers: set[int] = set()
        for _ in range(200):
            response = client.post("/v2/models/mlp/infer", json=body)
            assert response.status_code == 200, response.text
            got = np.reshape(response.json()["outputs"][0]["data"], (6, 10))
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
            workers.add(int(response.headers[WORKER_HEADER]))
            if len(workers) == 2:
                break
        assert len(workers) == 2
        processes = {served.process.pid, *_children(served.process.pid)}
        assert workers <= processes
        for pid in processes:
            assert "libtorch" not in Path(f"/proc/{pid}/maps").read_text(), pid


def test_a_keys_quota_is_shared_by_every_worker(tmp_path: Path) -> None:
    quota = 6
    registry = Registry.from_settings(Settings(home=tmp_path))
    try:
        clf, x = iris_classifier()
        registry.register(clf, "iris", sample_input=x[:2])
        secret = (
            KeyStore(registry.database)
            .create(name="limited", role=Role.INVOKER, created_by="test", quota=(quota, "day"))
            .secret
        )
    finally:
        registry.close()
    env = {**os.environ, "AIMASS_HOME": str(tmp_path)}
    with (
        serve_in_process(["--workers", "2", "-m", "iris"], env=env) as served,
        _fresh_client(served.url) as client,
    ):
        client.headers["authorization"] = f"Bearer {secret}"
        answers = [_iris(client) for _ in range(100)]
    # Both workers answered (each taking from the quota), and between them
    # admitted the quota exactly once, not once each.
    assert len({response.headers[WORKER_HEADER] for response in answers}) == 2
    statuses = [response.status_code for response in answers]
    assert statuses.count(200) == quota
    assert statuses.count(429) == len(answers) - quota
