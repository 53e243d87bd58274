"""Identical models share their artifacts: saved bytes are deterministic."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aimass.registry import Registry
from aimass.registry.artifacts import LocalArtifactStore, S3ArtifactStore


def _stored_objects(registry: Registry) -> list[str]:
    store = registry.artifacts
    if isinstance(store, LocalArtifactStore):
        return sorted(p.name for p in (store.root / "objects").rglob("*") if p.is_file())
    assert isinstance(store, S3ArtifactStore)
    listed = store._client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix)
    return sorted(item["Key"].rsplit("/", 1)[-1] for item in listed.get("Contents", []))


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    x, y = load_iris(return_X_y=True)
    return x, y


@pytest.mark.parametrize("kind", ["pipeline", "forest"])
def test_registering_the_same_model_twice_stores_one_copy(
    registry: Registry, iris: Any, kind: str
) -> None:
    x, y = iris
    model = (
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
        if kind == "pipeline"
        else RandomForestClassifier(n_estimators=8, random_state=0)
    ).fit(x, y)
    first = registry.register(model, "same", sample_input=x[:2])
    # A deep copy lives at other addresses: the bytes must not depend on id().
    second = registry.register(copy.deepcopy(model), "same", sample_input=x[:2])

    files = {f.path: f.sha256 for f in first.manifest.files}
    assert "model.skops" in files
    if kind == "pipeline":
        assert "serving.onnx" in files  # the plan is saved, and deterministic too
    assert {f.path: f.sha256 for f in second.manifest.files} == files
    assert _stored_objects(registry) == sorted(files.values())
    loaded = registry.load("same", 2)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
