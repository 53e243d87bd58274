"""The XGBoost runtime beyond conformance: model files, recorded options, format choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from aimass.contract.signature import Task
from aimass.errors import AimassError, ErrorCode
from aimass.runtimes import detect_runtime
from aimass.runtimes.xgboost import XGBoostRuntime


def test_classifier_save_records_kind_classes_and_features(
    iris: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y = iris
    clf = xgb.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1).fit(x, y)
    saved = XGBoostRuntime.save(clf, tmp_path, sample_input=x[:3])
    assert saved.format == "xgboost-ubj" and not saved.unsafe
    assert saved.task is Task.CLASSIFICATION
    assert saved.options["kind"] == "classifier"
    assert saved.options["estimator"] == "XGBClassifier"
    assert saved.options["classes"] == [0, 1, 2]
    assert saved.options["n_features"] == 4
    assert [(s.name, s.shape) for s in saved.signature.outputs] == [
        ("label", (-1,)),
        ("probabilities", (-1, 3)),
    ]
    assert (tmp_path / "model.ubj").is_file()


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_model_file_is_detected_and_saved_from_its_path(
    iris: tuple[np.ndarray, np.ndarray], tmp_path: Path, suffix: str
) -> None:
    x, y = iris
    booster = xgb.train({"objective": "reg:squarederror", "nthread": 1}, xgb.DMatrix(x, label=y), 3)
    path = tmp_path / f"model{suffix}"
    booster.save_model(path)
    assert detect_runtime(path) is XGBoostRuntime
    directory = tmp_path / "version"
    directory.mkdir()
    saved = XGBoostRuntime.save(path, directory)
    assert saved.options["kind"] == "booster"
    assert saved.task is Task.REGRESSION


def test_unrelated_json_file_is_not_claimed(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"name": "not a model"}', encoding="utf-8")
    assert not XGBoostRuntime.handles(path)


def test_unknown_model_format_is_refused(
    iris: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y = iris
    reg = xgb.XGBRegressor(n_estimators=2, n_jobs=1).fit(x, y)
    with pytest.raises(AimassError) as info:
        XGBoostRuntime.save(reg, tmp_path, model_format="pickle")
    assert info.value.code is ErrorCode.INVALID_INPUT
