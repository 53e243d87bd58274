"""Training specs: what validates, and how a bad one is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from aimass.errors import AimassError, ErrorCode
from aimass.lifecycle.spec import load_spec, parse_spec

EXAMPLES = Path(__file__).parents[3] / "examples"


def _base(**changes: object) -> dict[str, object]:
    spec: dict[str, object] = {
        "name": "m",
        "data": {"dataset": "iris"},
        "estimator": {"name": "LogisticRegression"},
    }
    spec.update(changes)
    return spec


@pytest.mark.parametrize("name", ["iris", "breast_cancer", "churn", "iris_torch"])
def test_every_example_spec_validates(name: str) -> None:
    spec = load_spec(EXAMPLES / f"{name}.yaml")
    if spec.data.path is not None:
        assert spec.data.path.is_file()  # relative to the spec file, not the working directory


def test_defaults() -> None:
    spec = parse_spec(_base())
    assert spec.split.test_size == 0.2
    assert spec.cv is None and spec.tune is None and spec.metrics is None


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"data": {"dataset": "iris", "path": "x.csv"}}, "data", "exactly one"),
        ({"data": {"dataset": "mnist"}}, "data", "unknown dataset"),
        ({"data": {"path": "x.csv"}}, "data", "target"),
        ({"estimatr": {"name": "X"}}, "estimatr", "Extra inputs"),
        ({"features": {"select": [{"A": {}, "B": {}}]}}, "features.select", "one mapping"),
        ({"cv": {"folds": 1}}, "cv.folds", "greater than or equal to 2"),
        (
            {"tune": {"metric": "f1_macro", "space": {"model__C": {"type": "float"}}}},
            "tune.space.model__C",
            "low",
        ),
    ],
)
def test_bad_specs_name_the_field(changes: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(AimassError) as caught:
        parse_spec(_base(**changes))
    assert caught.value.code is ErrorCode.INVALID_INPUT
    assert caught.value.details["field"] == field
    assert words in caught.value.message


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(AimassError) as caught:
        load_spec(tmp_path / "nope.yaml")
    assert caught.value.code is ErrorCode.NOT_FOUND
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(AimassError, match="expected a mapping"):
        load_spec(bad)
