"""scikit-learn models served through their ONNX serving plan, and the cases that get none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from aimass.contract.runtime import Arrays, LoadOptions
from aimass.contract.signature import as_array
from aimass.convert.plan import PLAN_FILE
from aimass.convert.sklearn import ATOL, RTOL
from aimass.convert.verify import mismatch
from aimass.errors import AimassError, ErrorCode
from aimass.registry import Registry
from aimass.runtimes.sklearn import SklearnRuntime
from aimass.settings import Settings
from aimass.testing.checks import save_and_load
from aimass.testing.models import iris_classifier

X, Y = load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def iris() -> Pipeline:
    clf, _ = iris_classifier()
    return clf


_save_and_load = partial(save_and_load, SklearnRuntime)


def _assert_reproduces(got: Arrays, want: Arrays) -> None:
    assert list(got) == list(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype, name
        if value.dtype.kind == "f":
            np.testing.assert_allclose(got[name], value, rtol=RTOL, atol=ATOL, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], value, err_msg=name)


_FRESH_PROCESS = """
import json, sys
import numpy as np
import aimass

model = aimass.load("iris")
x = np.load(sys.argv[1])
np.savez(sys.argv[2], label=model.predict(x), probabilities=model.predict_proba(x))
before = {name: name in sys.modules for name in ("sklearn", "skops")}
estimator = model.runtime.estimator
print(json.dumps({
    "plan": model.runtime.plan is not None,
    "before": before,
    "estimator": type(estimator).__module__ + "." + type(estimator).__qualname__,
    "estimator_agrees": bool((estimator.predict(x) == model.predict(x)).all()),
}))
"""


def _run_fresh(settings: Settings, tmp_path: Path, prelude: str = "") -> dict[str, Any]:
    np.save(tmp_path / "x.npy", X)
    script = textwrap.dedent(prelude) + _FRESH_PROCESS
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "x.npy"), str(tmp_path / "out.npz")],
        env=dict(os.environ, AIMASS_HOME=str(settings.home)),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


@pytest.mark.slow
def test_iris_is_served_by_its_plan_in_a_fresh_process_without_sklearn(
    local_settings: Settings, iris: Pipeline, tmp_path: Path
) -> None:
    registry = Registry.from_settings(local_settings)
    info = registry.register(iris, "iris", sample_input=X[::30])
    registry.close()
    plan = info.manifest.options["onnx_plan"]
    assert plan["file"] == PLAN_FILE
    assert plan["outputs"] == {"label": "label", "probabilities": "probabilities"}
    assert plan["tolerance"] == {"rtol": RTOL, "atol": ATOL}
    assert PLAN_FILE in {f.path for f in info.manifest.files}

    report = _run_fresh(local_settings, tmp_path)

    assert report["plan"] is True
    assert report["before"] == {"sklearn": False, "skops": False}
    assert report["estimator"] == "sklearn.pipeline.Pipeline"
    assert report["estimator_agrees"] is True
    served = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(served["label"], iris.predict(X))
    np.testing.assert_allclose(served["probabilities"], iris.predict_proba(X), rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_without_onnxruntime_the_estimator_serves(
    local_settings: Settings, iris: Pipeline, tmp_path: Path
) -> None:
    registry = Registry.from_settings(local_settings)
    registry.register(iris, "iris", sample_input=X[::30])
    registry.close()

    # A None entry in sys.modules makes the import fail, as an uninstalled package does.
    report = _run_fresh(
        local_settings, tmp_path, prelude="import sys\nsys.modules['onnxruntime'] = None\n"
    )

    assert report["plan"] is False
    assert report["before"]["sklearn"] is True
    np.testing.assert_array_equal(np.load(tmp_path / "out.npz")["label"], iris.predict(X))


def test_the_plan_is_stored_and_loaded_on_every_backend(registry: Registry, iris: Pipeline) -> None:
    registry.register(iris, "iris", sample_input=X[:4])
    model = registry.load("iris")
    runtime = model.runtime
    assert isinstance(runtime, SklearnRuntime)
    assert runtime.plan is not None
    np.testing.assert_array_equal(model.predict(X), iris.predict(X))
    np.testing.assert_allclose(model.predict_proba(X), iris.predict_proba(X), rtol=RTOL, atol=ATOL)


def _ridge() -> tuple[Any, Any]:
    x, y = load_diabetes(return_X_y=True)
    return Ridge().fit(x, y), x[:5]


def _pca() -> tuple[Any, Any]:
    return PCA(2).fit(X), X[:5]


def _boolean_labels() -> tuple[Any, Any]:
    return LogisticRegression(max_iter=500).fit(X, Y == 1), X[:5]


def _text_labels() -> tuple[Any, Any]:
    names = np.array(["setosa", "versicolor", "virginica"], dtype=object)
    return LogisticRegression(max_iter=500).fit(X, names[Y]), X[:5]


def _integer_input() -> tuple[Any, Any]:
    x = (X * 10).astype(np.int64)
    return LogisticRegression(max_iter=1000).fit(x, Y), x[:5]


def _no_sample() -> tuple[Any, Any]:
    # Without sample_input the runtime saves against np.zeros((1, n_features)).
    return iris_classifier()[0], None


PLANNED: dict[str, Callable[[], tuple[Any, Any]]] = {
    "regressor": _ridge,
    "transformer": _pca,
    "boolean-labels": _boolean_labels,
    "text-labels": _text_labels,
    "integer-input": _integer_input,
    "zeros-sample": _no_sample,
}


@pytest.mark.parametrize("case", list(PLANNED))
def test_the_plan_reproduces_the_estimator_in_the_signature_types(
    case: str, tmp_path: Path
) -> None:
    obj, sample = PLANNED[case]()
    runtime = _save_and_load(obj, tmp_path / "v", sample)
    assert runtime.plan is not None
    x = as_array(sample if sample is not None else X)
    inputs = runtime.manifest.signature.validate_inputs({"input": x})

    served = runtime.predict(inputs)

    reference = SklearnRuntime(runtime.manifest, tmp_path / "v", LoadOptions(), estimator=obj)
    _assert_reproduces(served, reference.predict(inputs))
    _assert_reproduces(runtime.predict({"input": x[:1]}), reference.predict({"input": x[:1]}))


def test_an_estimator_skl2onnx_cannot_convert_gets_no_plan_and_still_predicts(
    tmp_path: Path,
) -> None:
    clf = make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=500)).fit(X, Y)
    runtime = _save_and_load(clf, tmp_path / "v", X[:5])
    assert runtime.plan is None
    assert "onnx_plan" not in runtime.manifest.options
    assert not (tmp_path / "v" / PLAN_FILE).exists()
    np.testing.assert_array_equal(runtime.predict({"input": X})["label"], clf.predict(X))


def test_a_conversion_that_does_not_reproduce_the_estimator_is_refused(tmp_path: Path) -> None:
    # Fitted on float32, scikit-learn computes in float32; the float64 plan
    # differs in the last digits, beyond the tolerance.
    x32 = X.astype(np.float32)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x32, Y)
    runtime = _save_and_load(clf, tmp_path / "v", x32[:5])
    assert runtime.plan is None
    assert not (tmp_path / "v" / PLAN_FILE).exists()


def test_the_save_option_and_the_setting_turn_plans_off(
    tmp_path: Path, iris: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = _save_and_load(iris, tmp_path / "v", X[:4], onnx_serving_plan=False)
    assert runtime.plan is None

    monkeypatch.setenv("AIMASS_REGISTRY__ONNX_SERVING_PLANS", "false")
    settings = Settings(home=tmp_path / "home")
    assert settings.registry.onnx_serving_plans is False
    registry = Registry.from_settings(settings)
    try:
        info = registry.register(iris, "iris", sample_input=X[:4])
    finally:
        registry.close()
    assert "onnx_plan" not in info.manifest.options
    assert [f.path for f in info.manifest.files] == ["model.skops"]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_refused_as_scikit_learn_refuses_it(
    bad: float, iris: Pipeline, tmp_path: Path
) -> None:
    runtime = _save_and_load(iris, tmp_path / "v", X[:4])
    assert runtime.plan is not None
    x = X[:3].copy()
    x[1, 2] = bad
    with pytest.raises(ValueError):
        iris.predict(x)
    with pytest.raises(AimassError) as info:
        runtime.predict({"input": x})
    assert info.value.code is ErrorCode.INVALID_INPUT


def test_a_pickled_version_serves_through_its_plan_when_pickles_are_refused(
    iris: Pipeline, tmp_path: Path
) -> None:
    runtime = _save_and_load(
        iris, tmp_path / "v", X[:4], LoadOptions(allow_pickle=False), prefer_safe=False
    )
    assert runtime.manifest.format == "pickle"
    assert runtime.plan is not None
    np.testing.assert_array_equal(runtime.predict({"input": X})["label"], iris.predict(X))
    with pytest.raises(AimassError) as info:
        _ = runtime.estimator
    assert info.value.code is ErrorCode.UNSAFE_FORMAT


def test_the_estimator_loads_once_when_threads_touch_it_together(
    iris: Pipeline, tmp_path: Path
) -> None:
    runtime = _save_and_load(iris, tmp_path / "v", X[:4])
    assert runtime.plan is not None
    barrier = threading.Barrier(4)
    seen: list[Any] = []

    def touch() -> None:
        barrier.wait()
        seen.append(runtime.estimator)

    threads = [threading.Thread(target=touch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 4
    assert all(e is seen[0] for e in seen)
    np.testing.assert_array_equal(seen[0].predict(X), iris.predict(X))


_LABELS = np.array([0, 1, 2])
_PROBABILITIES = np.array([[0.9, 0.1], [0.2, 0.8], [np.nan, 1.0]])


@pytest.mark.parametrize(
    ("got", "reason"),
    [
        ({"label": np.array([0, 1, 1]), "probabilities": _PROBABILITIES}, "'label' differs"),
        (
            {"label": _LABELS, "probabilities": _PROBABILITIES + 1e-6},
            "'probabilities' differs",
        ),
        (
            {"label": _LABELS.astype(np.int32), "probabilities": _PROBABILITIES},
            "'label' is int32(3,), not int64(3,)",
        ),
        (
            {"label": _LABELS[:, None], "probabilities": _PROBABILITIES},
            "'label' is int64(3, 1), not int64(3,)",
        ),
        (
            {"probabilities": _PROBABILITIES, "label": _LABELS},
            "outputs ['probabilities', 'label'] instead of ['label', 'probabilities']",
        ),
        ({"label": _LABELS}, "outputs ['label'] instead of ['label', 'probabilities']"),
        (
            {"label": _LABELS, "probabilities": np.nan_to_num(_PROBABILITIES)},
            "'probabilities' differs",
        ),
    ],
)
def test_the_verifier_refuses_outputs_that_differ(got: Arrays, reason: str) -> None:
    want = {"label": _LABELS, "probabilities": _PROBABILITIES}
    assert mismatch(want, got, rtol=RTOL, atol=ATOL) == reason


def test_the_verifier_accepts_floats_within_the_tolerance() -> None:
    want = {"label": _LABELS, "probabilities": _PROBABILITIES}
    close = {"label": _LABELS.copy(), "probabilities": _PROBABILITIES * (1 + RTOL / 10)}
    assert mismatch(want, close, rtol=RTOL, atol=ATOL) is None
