"""The LightGBM runtime beyond conformance: model files and recorded options."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from aimass.contract.signature import Task
from aimass.errors import AimassError, ErrorCode
from aimass.runtimes import detect_runtime
from aimass.runtimes.lightgbm import LightGBMRuntime


def test_classifier_save_records_classes_in_the_text_format(
    iris: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y = iris
    labels = np.array(["a", "b", "c"], dtype=object)[y]
    clf = lgb.LGBMClassifier(n_estimators=3, num_leaves=4, n_jobs=1, verbose=-1).fit(x, labels)
    saved = LightGBMRuntime.save(clf, tmp_path, sample_input=x[:3])
    assert saved.format == "lightgbm-text" and not saved.unsafe
    assert saved.task is Task.CLASSIFICATION
    assert saved.options["classes"] == ["a", "b", "c"]
    assert saved.options["n_features"] == 4
    assert saved.signature.outputs[0].datatype == "BYTES"
    assert (tmp_path / "model.txt").read_text(encoding="utf-8").startswith("tree\n")


def test_text_model_file_is_detected_and_saved_from_its_path(
    iris: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y = iris
    booster = lgb.train(
        {"objective": "regression", "verbose": -1}, lgb.Dataset(x, label=y), num_boost_round=3
    )
    path = tmp_path / "model.txt"
    booster.save_model(str(path))
    assert detect_runtime(path) is LightGBMRuntime
    directory = tmp_path / "version"
    directory.mkdir()
    saved = LightGBMRuntime.save(path, directory, sample_input=x[:2])
    assert saved.options["kind"] == "booster"
    assert [s.name for s in saved.signature.outputs] == ["prediction"]


def test_unrelated_text_file_is_not_claimed(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("tree surgeon's notes\n", encoding="utf-8")
    assert not LightGBMRuntime.handles(path)


def test_sample_with_the_wrong_width_is_refused(
    iris: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y = iris
    reg = lgb.LGBMRegressor(n_estimators=2, n_jobs=1, verbose=-1).fit(x, y)
    with pytest.raises(AimassError) as info:
        LightGBMRuntime.save(reg, tmp_path, sample_input=x[:2, :3])
    assert info.value.code is ErrorCode.INVALID_INPUT
