"""Building the Pipeline from a spec: names resolved from the table, nothing else imported."""

from __future__ import annotations

import pandas as pd
import pytest

from aimass.errors import AimassError, ErrorCode
from aimass.lifecycle.pipeline import build_pipeline
from aimass.lifecycle.spec import parse_spec

FRAME = pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4], "c": ["x", "y"]})


def _spec(**changes: object) -> object:
    raw: dict[str, object] = {
        "name": "m",
        "data": {"dataset": "iris"},
        "estimator": {"name": "LogisticRegression"},
    }
    raw.update(changes)
    return parse_spec(raw)


def test_steps_are_named_for_tuning() -> None:
    spec = _spec(
        features={
            "numeric": {"steps": [{"SimpleImputer": {"strategy": "median"}}]},
            "categorical": {"steps": [{"OneHotEncoder": {"handle_unknown": "ignore"}}]},
            "select": [{"SelectKBest": {"k": 2, "score_func": "f_classif"}}],
        },
        estimator={"name": "sklearn.linear_model.LogisticRegression", "params": {"C": 0.5}},
    )
    pipeline = build_pipeline(spec, FRAME)  # type: ignore[arg-type]
    assert [name for name, _ in pipeline.steps] == ["features", "selectkbest", "model"]
    params = pipeline.get_params()
    assert params["model__C"] == 0.5
    assert params["model__random_state"] == 0  # seeded from the spec
    assert params["features__numeric__simpleimputer__strategy"] == "median"
    columns = {name: cols for name, _, cols in pipeline.named_steps["features"].transformers}
    assert columns == {"numeric": ["a", "b"], "categorical": ["c"]}


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"estimator": {"name": "Nope"}}, "unknown estimator 'Nope'"),
        ({"estimator": {"name": "os.system"}}, "only classes from"),
        ({"estimator": {"name": "sklearn.metrics.accuracy_score"}}, "not a class"),
        ({"estimator": {"name": "LogisticRegression", "params": {"bogus": 1}}}, "bogus"),
        ({"features": {"select": [{"SelectKBest": {"score_func": "eval"}}]}}, "score_func"),
        ({"features": {"numeric": {}}}, "['c'] are in no group"),
        ({"features": {"numeric": {"columns": ["zz"]}}}, "no column(s) ['zz']"),
    ],
)
def test_bad_pipelines_are_refused(changes: dict[str, object], words: str) -> None:
    with pytest.raises(AimassError) as caught:
        build_pipeline(_spec(**changes), FRAME)  # type: ignore[arg-type]
    assert caught.value.code is ErrorCode.INVALID_INPUT
    assert words in caught.value.message
