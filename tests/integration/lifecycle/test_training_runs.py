"""Training specs end to end: registered, served, tracked and followed over HTTP."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from aimass.contract.manifest import LineageMethod
from aimass.errors import AimassError, ErrorCode
from aimass.lifecycle.runs import FAILED, RUNNING, SUCCEEDED, RunStore
from aimass.lifecycle.spec import load_spec, parse_spec
from aimass.lifecycle.train import Trainer, TrainResult
from aimass.registry import Registry

EXAMPLES = Path(__file__).parents[3] / "examples"


def _train(registry: Registry, runs: RunStore, example: str, **changes: Any) -> TrainResult:
    spec = load_spec(EXAMPLES / f"{example}.yaml")
    if changes:
        spec = spec.model_copy(update=changes)
    return Trainer(registry, runs).train(spec)


@pytest.fixture(scope="module")
def iris(lc_registry: Registry, runs: RunStore) -> TrainResult:
    return _train(lc_registry, runs, "iris")


@pytest.fixture(scope="module")
def churn(lc_registry: Registry, runs: RunStore) -> TrainResult:
    return _train(lc_registry, runs, "churn")


def test_iris_spec_registers_the_whole_pipeline(iris: TrainResult, lc_registry: Registry) -> None:
    version = iris.version
    assert version.ref == "iris-classifier:1"
    assert [name for name, _ in iris.pipeline.steps] == ["features", "model"]
    assert version.manifest.lineage.method is LineageMethod.TRAINED
    assert version.manifest.lineage.params["run"] == iris.run.id
    training = version.metadata["training"]
    assert training["metrics"] == iris.evaluation.metrics
    assert training["data"] == iris.data.model_dump()
    assert training["target"] == "target"
    assert version.metadata["card"]["owners"] == ["ml-platform"]
    loaded = lc_registry.load("iris-classifier", 1)
    assert (loaded.predict(iris.test_features) == iris.pipeline.predict(iris.test_features)).all()


def test_run_records_params_metrics_data_duration_and_version(
    iris: TrainResult, runs: RunStore
) -> None:
    run = runs.get(iris.run.id)
    assert (run.kind, run.status, run.progress, run.version) == ("train", SUCCEEDED, 1.0, 1)
    assert run.params == {"estimator": "LogisticRegression", "model__max_iter": 500}
    assert run.metrics == iris.evaluation.metrics
    assert run.data["rows"] == 150 and run.data["columns"] == 4
    assert len(run.data["sha256"]) == 64
    assert run.duration_s is not None and run.duration_s > 0
    spread = run.extra["cross_validation"]["metrics"]["f1_macro"]
    assert len(spread["folds"]) == 5
    assert spread["mean"] == pytest.approx(np.mean(spread["folds"]))
    assert spread["std"] == pytest.approx(np.std(spread["folds"]))


def test_same_data_same_fingerprint(
    iris: TrainResult, lc_registry: Registry, runs: RunStore
) -> None:
    again = _train(lc_registry, runs, "iris", seed=1)
    assert again.data.sha256 == iris.data.sha256
    assert again.version.version == 2
    assert again.run.params == iris.run.params


def test_breast_cancer_spec_trains(lc_registry: Registry, runs: RunStore) -> None:
    result = _train(lc_registry, runs, "breast_cancer")
    assert set(result.evaluation.metrics) == {"accuracy", "f1_macro", "roc_auc_ovr", "log_loss"}
    assert result.data.rows == 569 and result.data.columns == 30
    assert result.cross_validation is not None
    assert result.cross_validation.metrics["f1_macro"].std > 0


def test_csv_with_categories_and_missing_values(churn: TrainResult, lc_registry: Registry) -> None:
    frame = pd.read_csv(EXAMPLES / "churn.csv")
    assert frame.isna().any().any()
    assert churn.data.rows == 600
    inputs = {s.name: s.datatype.value for s in churn.version.manifest.signature.inputs}
    assert inputs == {
        "contract": "BYTES",
        "payment_method": "BYTES",
        "tenure_months": "FP64",
        "monthly_charges": "FP64",
        "support_calls": "INT64",
    }
    assert churn.evaluation.labels == ["no", "yes"]
    assert churn.evaluation.metrics["f1_macro"] > 0.6  # better than chance on this data


def test_served_predictions_equal_the_training_pipelines(churn: TrainResult, base_url: str) -> None:
    """Over the real server, missing numbers included (binary tensors carry NaN)."""
    import tritonclient.http as triton

    rows = churn.test_features[churn.test_features["payment_method"].notna()]
    assert rows["tenure_months"].isna().any()
    client = triton.InferenceServerClient(base_url.removeprefix("http://"))
    inputs = []
    for spec in churn.version.manifest.signature.inputs:
        values = rows[spec.name].to_numpy()
        values = values.astype(object) if spec.datatype.value == "BYTES" else values
        tensor = triton.InferInput(spec.name, [len(rows)], spec.datatype.value)
        tensor.set_data_from_numpy(values, binary_data=True)
        inputs.append(tensor)
    answer = client.infer("churn:1", inputs)
    served = [v.decode() for v in answer.as_numpy("label")]
    assert served == list(churn.pipeline.predict(rows))
    np.testing.assert_allclose(
        answer.as_numpy("probabilities"), churn.pipeline.predict_proba(rows), rtol=1e-12
    )
    client.close()


def test_json_requests_are_served_the_same(iris: TrainResult, base_url: str) -> None:
    rows = iris.test_features.head(7)
    body = {
        "inputs": [
            {"name": c, "datatype": "FP64", "shape": [len(rows)], "data": rows[c].tolist()}
            for c in rows.columns
        ]
    }
    answer = httpx.post(f"{base_url}/v2/models/iris-classifier:1/infer", json=body).json()
    labels = {o["name"]: o["data"] for o in answer["outputs"]}["label"]
    assert labels == iris.pipeline.predict(rows).tolist()


def test_training_is_followed_through_the_api(
    lc_registry: Registry, runs: RunStore, base_url: str
) -> None:
    seen: list[dict[str, Any]] = []

    def watch(message: str, fraction: float) -> None:
        if message == "fitting":
            found = httpx.get(f"{base_url}/v1/runs", params={"status": "running"}).json()["runs"]
            assert len(found) == 1
            seen.append(httpx.get(f"{base_url}/v1/runs/{found[0]['id']}").json())

    spec = load_spec(EXAMPLES / "iris.yaml").model_copy(update={"name": "followed"})
    result = Trainer(lc_registry, runs, progress=watch).train(spec)
    assert len(seen) == 1
    during = seen[0]
    assert during["status"] == RUNNING and during["model"] == "followed"
    assert 0 < during["progress"] < 1 and during["message"] == "fitting"
    assert during["data"]["sha256"] == result.data.sha256
    after = httpx.get(f"{base_url}/v1/runs/{result.run.id}").json()
    assert after["status"] == SUCCEEDED and after["progress"] == 1.0 and after["version"] == 1
    listed = httpx.get(f"{base_url}/v1/runs", params={"model": "followed"}).json()["runs"]
    assert [r["id"] for r in listed] == [result.run.id]


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/v1/runs/999999", 404, "run 999999 not found"),
        ("/v1/runs/abc", 400, "id must be a whole number"),
        ("/v1/runs?limit=0", 400, "limit must be"),
        ("/v1/runs?kind=deploy", 400, "kind must be one of"),
        ("/v1/runs?color=red", 400, "unknown query parameter"),
    ],
)
def test_run_api_errors_are_4xx_json(base_url: str, path: str, status: int, words: str) -> None:
    answer = httpx.get(f"{base_url}{path}")
    assert answer.status_code == status
    assert words in answer.json()["error"]["message"]


def test_a_failing_run_is_recorded_failed(lc_registry: Registry, runs: RunStore) -> None:
    spec = parse_spec(
        {
            "name": "broken",
            "data": {"dataset": "iris"},
            "estimator": {"name": "LogisticRegression", "params": {"C": -1.0}},
        }
    )
    with pytest.raises(AimassError, match=r"fitting LogisticRegression failed: .*'C'") as raised:
        Trainer(lc_registry, runs).train(spec)
    assert raised.value.code is ErrorCode.INVALID_INPUT  # the spec's mistake, not a bug
    (run,) = runs.list(model="broken")
    assert run.status == FAILED and "C" in run.message and run.finished_at is not None
    with pytest.raises(AimassError, match="not found"):
        lc_registry.get_model("broken")


def _frameworks() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("XGBClassifier", {"n_estimators": 20, "max_depth": 3}),
        ("LGBMClassifier", {"n_estimators": 20, "verbose": -1}),
        ("TorchClassifier", {"hidden": [16], "epochs": 30, "batch_size": 16}),
    ]


@pytest.mark.parametrize(("estimator", "params"), _frameworks())
def test_other_runtimes_train_inside_the_pipeline(
    lc_registry: Registry, runs: RunStore, estimator: str, params: dict[str, Any]
) -> None:
    spec = parse_spec(
        {
            "name": f"iris-{estimator.lower()}",
            "data": {"dataset": "iris"},
            "features": {"numeric": {"steps": [{"StandardScaler": {}}]}},
            "estimator": {"name": estimator, "params": params},
        }
    )
    result = Trainer(lc_registry, runs).train(spec)
    assert result.evaluation.metrics["accuracy"] > 0.8
    loaded = lc_registry.load(result.version.model, result.version.version)
    x = result.test_features
    assert (loaded.predict(x) == result.pipeline.predict(x)).all()
    np.testing.assert_allclose(loaded.predict_proba(x), result.pipeline.predict_proba(x), rtol=1e-6)


def test_torch_regressor(lc_registry: Registry, runs: RunStore) -> None:
    spec = parse_spec(
        {
            "name": "diabetes-torch",
            "data": {"dataset": "diabetes"},
            "features": {"numeric": {"steps": [{"StandardScaler": {}}]}},
            "estimator": {"name": "TorchRegressor", "params": {"epochs": 40, "lr": 0.05}},
            "cv": {"folds": 2},
        }
    )
    result = Trainer(lc_registry, runs).train(spec)
    assert set(result.evaluation.metrics) == {"mae", "rmse", "r2"}
    assert result.evaluation.metrics["r2"] > 0.2
    assert result.cross_validation is not None and result.cross_validation.scheme == "2-fold"
    loaded = lc_registry.load("diabetes-torch")
    np.testing.assert_allclose(
        loaded.predict(result.test_features), result.pipeline.predict(result.test_features)
    )


def test_runs_table_on_every_backend(registry: Registry) -> None:
    """The migration and JSON columns work on PostgreSQL and S3-backed registries too."""
    runs = RunStore.of(registry)
    result = _train(registry, runs, "iris", cv=None)
    stored = runs.get(result.run.id)
    assert stored.metrics == result.evaluation.metrics
    assert stored.data == result.data.model_dump()
    assert runs.list(model="iris-classifier", kind="train")[0].id == result.run.id


def test_concurrent_progress_updates_do_not_lose_the_result(
    lc_registry: Registry, runs: RunStore
) -> None:
    run = runs.start("train", "threads", params={})
    threads = [
        threading.Thread(target=runs.update, args=(run.id,), kwargs={"progress": i / 10})
        for i in range(10)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    finished = runs.finish(run.id, metrics={"accuracy": 1.0}, version=None)
    assert finished.status == SUCCEEDED and finished.progress == 1.0


def test_python_api_trains_from_a_mapping(lc_registry: Registry) -> None:
    from aimass.lifecycle import RunStore as Exported
    from aimass.lifecycle import train_and_register

    steps: list[float] = []
    result = train_and_register(
        {"name": "from-python", "data": {"dataset": "wine"}, "estimator": {"name": "GaussianNB"}},
        registry=lc_registry,
        progress=lambda message, fraction: steps.append(fraction),
    )
    assert result.version.ref == "from-python:1"
    assert steps == sorted(steps) and steps[-1] == 1.0
    assert Exported.of(lc_registry).get(result.run.id).version == 1
