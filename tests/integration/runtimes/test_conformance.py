"""Every runtime of the runtime table passes the shared conformance suite (aimass.testing.checks).

CASES holds, for each runtime the table names, the tiny real models that
check it; one parametrized test runs them all, and another holds CASES
against the table, so a runtime added without cases fails here.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aimass.errors import AimassError, ErrorCode
from aimass.runtimes import RUNTIMES
from aimass.runtimes.loading import require
from aimass.testing.checks import check_runtime


@dataclass(frozen=True)
class Case:
    """One conformance run: the object, a sample of its input, its own prediction."""

    obj: Any
    sample: Any
    expected: Callable[[Any], Any]
    bad_inputs: list[dict[str, np.ndarray[Any, Any]]] = field(default_factory=list)
    runtime: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    rtol: float = 1e-5
    atol: float = 1e-6


def _sklearn_logreg_iris(tmp_path: Path) -> Case:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_iris(return_X_y=True)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    return Case(
        clf,
        x[::30],
        clf.predict,
        bad_inputs=[
            {"input": np.zeros((2, 3))},
            {"input": np.array([["a", "b", "c", "d"]], dtype=object)},
            {"other": np.zeros((2, 4))},
        ],
    )


def _sklearn_regressor_diabetes(tmp_path: Path) -> Case:
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import RandomForestRegressor

    x, y = load_diabetes(return_X_y=True)
    reg = RandomForestRegressor(n_estimators=5, max_depth=3, random_state=0).fit(x, y)
    return Case(reg, x[:6], reg.predict, bad_inputs=[{"input": np.zeros((2, 2))}])


def _sklearn_dataframe_pipeline(tmp_path: Path) -> Case:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    n = 40
    age = rng.normal(40, 10, n)
    age[::7] = np.nan  # missing values, imputed by the pipeline
    income = rng.normal(50, 15, n)
    income[::5] = np.nan
    city = np.array(["paris", "lyon", "nice"], dtype=object)[rng.integers(0, 3, n)]
    frame = pd.DataFrame({"age": age, "income": income, "city": city})
    y = (np.nan_to_num(age) + (city == "paris") * 10 > 40).astype(int)
    pipe = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", SimpleImputer(strategy="mean"), ["age", "income"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                    ]
                ),
            ),
            ("clf", make_pipeline(LogisticRegression(max_iter=500))),
        ]
    ).fit(frame, y)
    return Case(
        pipe,
        frame.iloc[:8],
        pipe.predict,
        bad_inputs=[
            # Text where a number is declared, and a missing column.
            {
                "age": np.array(["old", "young"], dtype=object),
                "income": np.zeros(2),
                "city": np.array(["paris", "lyon"], dtype=object),
            },
            {"age": np.zeros(2), "income": np.zeros(2)},
        ],
    )


def _xgboost_classifier_iris(tmp_path: Path) -> Case:
    import xgboost as xgb
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    clf = xgb.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(x, y)
    return Case(
        clf,
        x[::30],
        clf.predict,
        bad_inputs=[{"input": np.zeros((2, 5))}, {"input": np.array([["a"] * 4], dtype=object)}],
    )


def _xgboost_regressor_json(tmp_path: Path) -> Case:
    import xgboost as xgb
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    x = x.astype(np.float32)
    x[::4, 0] = np.nan  # missing values are native to XGBoost
    reg = xgb.XGBRegressor(n_estimators=5, max_depth=3, n_jobs=1).fit(x, y)
    return Case(
        reg,
        x[:6],
        reg.predict,
        bad_inputs=[{"input": np.zeros((3, 4), dtype=np.float32)}],
        options={"model_format": "json"},
    )


def _xgboost_booster(tmp_path: Path) -> Case:
    import xgboost as xgb
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    params = {"objective": "binary:logistic", "max_depth": 2, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=5)
    return Case(
        booster,
        x[:5],
        lambda s: booster.predict(xgb.DMatrix(s)),
        bad_inputs=[{"input": np.zeros(3)}],
    )


def _lightgbm_classifier_text_labels(tmp_path: Path) -> Case:
    import lightgbm as lgb
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    clf = lgb.LGBMClassifier(n_estimators=5, num_leaves=4, n_jobs=1, verbose=-1).fit(x, names)
    return Case(
        clf,
        x[::30],
        clf.predict,
        bad_inputs=[{"input": np.zeros((2, 3))}, {"input": np.array([["a"] * 4], dtype=object)}],
    )


def _lightgbm_binary_classifier(tmp_path: Path) -> Case:
    import lightgbm as lgb
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    clf = lgb.LGBMClassifier(n_estimators=5, num_leaves=4, n_jobs=1, verbose=-1).fit(x, y)
    return Case(clf, x[:6], clf.predict, bad_inputs=[{"input": np.zeros((2, 29))}])


def _lightgbm_regressor(tmp_path: Path) -> Case:
    import lightgbm as lgb
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    reg = lgb.LGBMRegressor(n_estimators=5, num_leaves=4, n_jobs=1, verbose=-1).fit(x, y)
    return Case(reg, x[:6], reg.predict, bad_inputs=[{"input": np.zeros((2, 9))}])


def _lightgbm_booster(tmp_path: Path) -> Case:
    import lightgbm as lgb
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    params = {"objective": "multiclass", "num_class": 3, "num_leaves": 4, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(x, label=y), num_boost_round=5)
    return Case(booster, x[::30], booster.predict, bad_inputs=[{"wrong": np.zeros((2, 4))}])


def _onnx_from_skl2onnx(tmp_path: Path) -> Case:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    clf = LogisticRegression(max_iter=500).fit(x, y)
    proto = to_onnx(clf, x[:1], options={"zipmap": False})
    return Case(
        proto,
        x[::30],
        clf.predict,
        bad_inputs=[
            {"X": np.zeros((2, 3), dtype=np.float32)},
            {"X": np.array([["a"] * 4], dtype=object)},
        ],
    )


def _onnx_from_torch(tmp_path: Path) -> Case:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3), torch.nn.Softmax(dim=-1)
    ).eval()
    program = torch.onnx.export(
        net,
        (torch.zeros(2, 4),),
        input_names=["features"],
        output_names=["scores"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        dynamo=True,
    )
    assert program is not None
    sample = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)

    def expected(s: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        with torch.no_grad():
            out: np.ndarray[Any, Any] = net(torch.from_numpy(s)).numpy()
        return out

    return Case(
        program.model_proto,
        sample,
        expected,
        bad_inputs=[{"features": np.zeros((2, 5), dtype=np.float32)}],
    )


_CUSTOM_MODULE = """
'''A tiny PythonModel shipped with the version through code_paths.'''

from pathlib import Path

import numpy as np

from aimass.runtimes.custom import PythonModel


class TinyScorer(PythonModel):
    code_paths = [__file__]

    def load(self, artifacts: Path) -> None:
        self.weights = np.load(artifacts / "weights.npy")

    def predict(self, inputs):
        score = inputs["x"] @ self.weights
        label = np.where(score > 0, "pos", "neg").astype(object)
        lengths = np.array([len(s) for s in inputs["note"]], dtype=np.int64)
        return {"score": score, "label": label, "note_length": lengths}
"""


def _python_model(tmp_path: Path) -> Case:
    import importlib.util
    import sys

    weights = np.array([0.5, -1.0, 2.0])
    np.save(tmp_path / "weights.npy", weights)
    module_name = "aimass_conformance_tiny_scorer"
    path = tmp_path / f"{module_name}.py"
    path.write_text(_CUSTOM_MODULE, encoding="utf-8")
    # Importable here by module name, as a user's own module is; the fresh
    # process finds it only through the copy shipped by code_paths.
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    model = module.TinyScorer()
    model.artifacts = {"weights.npy": str(tmp_path / "weights.npy")}
    sample = {
        "x": np.random.default_rng(0).normal(size=(4, 3)),
        "note": np.array(["a", "bb", "", "dddd"], dtype=object),
    }
    return Case(
        model,
        sample,
        lambda s: s["x"] @ weights,
        bad_inputs=[
            {"x": np.zeros((2, 3))},
            {"x": np.zeros((2, 4)), "note": np.array(["a", "b"], dtype=object)},
            {"x": np.zeros((2, 3)), "note": np.zeros(2)},
        ],
    )


def _torch_mlp(tmp_path: Path) -> Case:
    import torch

    from aimass.testing.torch_models import DigitsMLP

    torch.manual_seed(0)
    module = DigitsMLP(hidden=16).eval()
    x = np.random.default_rng(0).random((6, 64), dtype=np.float32)

    def eager(rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        with torch.inference_mode():
            return module(torch.from_numpy(rows)).numpy()  # type: ignore[no-any-return]

    return Case(
        module,
        x,
        eager,
        bad_inputs=[{"input": np.zeros((2, 63), np.float32)}, {"input": np.full((2, 64), "x")}],
        options={"init_kwargs": {"hidden": 16}},
    )


def _transformers_classifier(tmp_path: Path) -> Case:
    from aimass.testing.models import tiny_text_classifier

    pipe = tiny_text_classifier(tmp_path / "vocab")
    texts = ["the movie was good", "a bad plot", "great", "the plot was the movie"]
    return Case(
        pipe,
        texts,
        lambda rows: [d["label"] for d in pipe(list(rows))],
        bad_inputs=[{"text": np.zeros(2)}, {"sentence": np.array(["a", "b"], dtype=object)}],
        runtime="transformers",
    )


CASES: dict[str, dict[str, Callable[[Path], Case]]] = {
    "sklearn": {
        "logreg-iris": _sklearn_logreg_iris,
        "regressor-diabetes": _sklearn_regressor_diabetes,
        "dataframe-pipeline": _sklearn_dataframe_pipeline,
    },
    "xgboost": {
        "classifier": _xgboost_classifier_iris,
        "regressor-json": _xgboost_regressor_json,
        "booster": _xgboost_booster,
    },
    "lightgbm": {
        "classifier-text-labels": _lightgbm_classifier_text_labels,
        "binary-classifier": _lightgbm_binary_classifier,
        "regressor": _lightgbm_regressor,
        "booster": _lightgbm_booster,
    },
    "onnx": {"skl2onnx": _onnx_from_skl2onnx, "torch-export": _onnx_from_torch},
    "python": {"python-model": _python_model},
    "torch": {"mlp": _torch_mlp},
    "transformers": {"text-classifier": _transformers_classifier},
}

# torch's ONNX exporter trips a deprecation inside torch itself, reported from
# copyreg, so pyproject.toml's torch.* filter does not catch it.
_MARKS = {
    "onnx/torch-export": [
        pytest.mark.filterwarnings(
            r"ignore:.*isinstance\(treespec, LeafSpec\). is deprecated:FutureWarning"
        )
    ],
}


def test_every_runtime_of_the_table_has_cases() -> None:
    assert set(CASES) == set(RUNTIMES)
    assert all(CASES.values())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("runtime", "name"),
    [
        pytest.param(
            runtime, name, marks=_MARKS.get(f"{runtime}/{name}", ()), id=f"{runtime}/{name}"
        )
        for runtime, cases in CASES.items()
        for name in cases
    ],
)
def test_runtime_passes_conformance(runtime: str, name: str, tmp_path: Path) -> None:
    case = CASES[runtime][name](tmp_path)
    loaded = check_runtime(
        case.obj,
        case.sample,
        expected=case.expected,
        runtime=case.runtime,
        bad_inputs=case.bad_inputs,
        rtol=case.rtol,
        atol=case.atol,
        **case.options,
    )
    assert loaded.runtime.name == runtime


def test_missing_framework_error_names_the_extra() -> None:
    with pytest.raises(AimassError) as info:
        require("not_a_real_module_xyz", "foo")
    assert info.value.code is ErrorCode.MISSING_EXTRA
    assert "pip install 'aimass[foo]'" in info.value.message


_HANDLES_ONLY = """
import sys
from pathlib import Path

from aimass.runtimes import runtime_class

for name in ("python", "xgboost", "lightgbm", "sklearn", "onnx"):
    cls = runtime_class(name)
    assert not cls.handles(object()), name
    assert not cls.handles(Path("weights.bin")), name
heavy = {"xgboost", "lightgbm", "sklearn", "onnx", "onnxruntime", "pandas"} & set(sys.modules)
assert not heavy, heavy
"""


def test_detection_imports_no_framework() -> None:
    # A fresh interpreter, because this one has imported every framework already.
    proc = subprocess.run(
        [sys.executable, "-c", _HANDLES_ONLY], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
