"""The development-flow commands run as a user runs them: subprocesses on a fresh AIMASS_HOME."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aimass.testing.cli import Cli

pytestmark = pytest.mark.slow  # every test runs the aimass command

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    root = tmp_path_factory.mktemp("lifecycle-cli")
    shutil.copytree(EXAMPLES, root / "examples")
    return Cli(root)


@pytest.fixture(scope="module")
def trained(cli: Cli) -> dict[str, Any]:
    result: dict[str, Any] = cli.json("train", "examples/iris.yaml")
    return result


@pytest.fixture(scope="module")
def torch_trained(cli: Cli) -> subprocess.CompletedProcess[str]:
    """``aimass train`` of the PyTorch spec as a person sees it; one training serves every test."""
    return cli.run("train", "examples/iris_torch.yaml")


def test_train_prints_metrics_with_cv_spread(trained: dict[str, Any]) -> None:
    assert trained["version"] == "iris-classifier:1"
    assert trained["run"]["status"] == "succeeded"
    spread = trained["cross_validation"]["metrics"]["f1_macro"]
    assert len(spread["folds"]) == 5 and spread["std"] > 0
    assert trained["data"]["rows"] == 150


def test_train_shows_a_progress_bar(torch_trained: subprocess.CompletedProcess[str]) -> None:
    assert "training iris-torch" in torch_trained.stderr and "100%" in torch_trained.stderr
    assert "registered iris-torch:1" in torch_trained.stdout


def test_runs_list_show_compare(
    cli: Cli, trained: dict[str, Any], torch_trained: subprocess.CompletedProcess[str]
) -> None:
    said = re.search(r"registered iris-torch:1 \(run (\d+),", torch_trained.stdout)
    assert said, torch_trained.stdout
    torch_run = int(said[1])
    first = trained["run"]["id"]
    listed = [r["id"] for r in cli.json("runs", "list", "--kind", "train")]
    assert first in listed and torch_run in listed
    shown = cli.json("runs", "show", str(first))
    assert shown["params"] == {"estimator": "LogisticRegression", "model__max_iter": 500}
    compared = cli.json("runs", "compare", str(first), str(torch_run))
    assert compared["params"]["estimator"] == ["LogisticRegression", "TorchClassifier"]
    assert len(compared["metrics"]["accuracy"]) == 2
    assert compared["data"][0] == compared["data"][1]  # the same iris, the same fingerprint
    assert "comparison" in cli.run("runs", "compare", str(first), str(torch_run)).stdout
    missing = cli.run("runs", "show", "9999", ok=False)
    assert missing.returncode == 1 and "run 9999 not found" in missing.stderr


def test_bad_spec_is_one_line_error(cli: Cli) -> None:
    bad = cli.cwd / "bad.yaml"
    bad.write_text("name: x\ndata: {dataset: iris}\nestimator: {name: Nope}\n")
    done = cli.run("train", str(bad), ok=False)
    assert done.returncode == 1
    assert "unknown estimator 'Nope'" in done.stderr


def test_a_failing_fit_is_one_line_error(cli: Cli) -> None:
    bad = cli.cwd / "bad-fit.yaml"
    bad.write_text(
        "name: bad-fit\ndata: {dataset: iris}\n"
        "estimator: {name: LogisticRegression, params: {penalty: elasticnet, solver: liblinear}}\n"
    )
    done = cli.run("train", str(bad), ok=False)
    assert done.returncode == 1
    [error] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert error == (
        "error: fitting LogisticRegression failed: "
        "Only 'saga' solver supports elasticnet penalty, got solver=liblinear."
    )
    as_json = cli.run("train", str(bad), "--json", ok=False)
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["error"]["code"] == "invalid_input"
    failed = cli.json("runs", "list", "--model", "bad-fit")
    assert [r["status"] for r in failed] == ["failed", "failed"]


def test_runs_list_shows_parameters_and_every_metric(cli: Cli, trained: dict[str, Any]) -> None:
    table = cli.run("runs", "list", "--model", "iris-classifier", env={"COLUMNS": "250"}).stdout
    assert "model__max_iter=500" in table and "estimator=LogisticRegression" in table
    for name, value in trained["run"]["metrics"].items():
        assert f"{name} {value:.4f}" in table


def test_evaluate_then_gate(cli: Cli, trained: dict[str, Any]) -> None:
    iris_csv = cli.cwd / "iris.csv"
    from sklearn.datasets import load_iris

    load_iris(as_frame=True).frame.to_csv(iris_csv, index=False)
    evaluated = cli.json("evaluate", "iris-classifier:1", str(iris_csv))
    accuracy = evaluated["evaluation"]["metrics"]["accuracy"]
    assert evaluated["run"]["kind"] == "evaluate" and evaluated["evaluation"]["rows"] == 150
    refused = cli.run(
        "alias",
        "set",
        "iris-classifier",
        "production",
        "1",
        "--require",
        "accuracy>0.999",
        ok=False,
    )
    assert refused.returncode == 1
    assert f"accuracy is {accuracy:.4g}, required >0.999" in " ".join(refused.stderr.split())
    moved = cli.json(
        "alias", "set", "iris-classifier", "production", "1", "--require", "accuracy>=0.9"
    )
    assert moved["checked"] == ["accuracy>=0.9"]
    malformed = cli.run(
        "alias", "set", "iris-classifier", "staging", "1", "--require", "accuracy", ok=False
    )
    assert "must look like METRIC>=NUMBER" in malformed.stderr
    cli.run("alias", "delete", "iris-classifier", "production")


def test_card_and_build(cli: Cli, trained: dict[str, Any]) -> None:
    card = cli.json("card", "iris-classifier:1", "--out", "card")
    assert [Path(p).name for p in card["plots"]] == ["roc_curve.png", "confusion_matrix.png"]
    assert (cli.cwd / card["html"]).read_text().startswith("<!doctype html>")
    built = cli.json("build", "iris-classifier:1", "--out", "image")
    assert built["command"] == ["serve", "--model", "iris-classifier:1"]
    assert (cli.cwd / "image" / "Dockerfile").is_file()
    again = cli.run("build", "iris-classifier:1", "--out", "image", ok=False)
    assert "is not empty" in again.stderr


def test_tune_with_a_time_bound(cli: Cli) -> None:
    tuned = cli.json("tune", "examples/breast_cancer.yaml", "--trials", "3", "--timeout", "60")
    assert len(tuned["study"]["trials"]) <= 3
    assert tuned["run"]["kind"] == "tune" and tuned["version"] == "breast-cancer:1"


def test_import_mlflow(cli: Cli) -> None:
    script = (
        "import mlflow.sklearn\n"
        "from mlflow.models import infer_signature\n"
        "from sklearn.datasets import load_iris\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "x, y = load_iris(return_X_y=True, as_frame=True)\n"
        "clf = LogisticRegression(max_iter=500).fit(x, y)\n"
        "mlflow.sklearn.save_model(clf, 'mlflow-iris', signature=infer_signature(x, y))\n"
    )
    subprocess.run(
        [sys.executable, "-c", script], cwd=cli.cwd, env=cli.env, check=True, capture_output=True
    )
    imported = cli.json("import", "mlflow", "mlflow-iris")
    assert imported["model"] == "mlflow-iris"
    assert imported["manifest"]["lineage"]["method"] == "imported"
    assert imported["manifest"]["signature"]["inputs"][0]["name"] == "sepal length (cm)"
    missing = cli.run("import", "mlflow", "nowhere", ok=False)
    assert "no MLmodel file" in missing.stderr


def test_import_mlflow_pyfunc_is_unsafe_and_refused_with_pickles_off(cli: Cli) -> None:
    script = (
        "import mlflow.pyfunc, pandas as pd\n"
        "from mlflow.models import infer_signature\n"
        "class Scaled(mlflow.pyfunc.PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n"
        "        return model_input * 2\n"
        "x = pd.DataFrame({'a': [1.0, 2.0]})\n"
        "mlflow.pyfunc.save_model('pyfunc-dir', python_model=Scaled(),"
        " signature=infer_signature(x, x * 2))\n"
    )
    subprocess.run(
        [sys.executable, "-c", script], cwd=cli.cwd, env=cli.env, check=True, capture_output=True
    )
    strict = Cli(cli.cwd)
    strict.env["AIMASS_REGISTRY__ALLOW_PICKLE"] = "false"
    refused = strict.run("import", "mlflow", "pyfunc-dir", "--name", "imp-pyfunc", ok=False)
    assert refused.returncode == 1
    assert "python_model.pkl is a pickle" in " ".join(refused.stderr.split())
    imported = cli.json("import", "mlflow", "pyfunc-dir", "--name", "imp-pyfunc")
    assert imported["manifest"]["unsafe"] is True
    load = "import aimass\naimass.load('imp-pyfunc:1')\n"
    loading = subprocess.run(
        [sys.executable, "-c", load], cwd=cli.cwd, env=strict.env, capture_output=True, text=True
    )
    assert loading.returncode != 0
    assert "python_model.pkl of model imp-pyfunc:1 is a pickle" in loading.stderr
