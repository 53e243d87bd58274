from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from aimass.deployments.compare import MAX_LABELS, Comparison, merge, summary


def compared(live: dict[str, Any], shadow: dict[str, Any], **kw: Any) -> dict[str, Any]:
    comparison = Comparison()
    comparison.add(
        {k: np.asarray(v) for k, v in live.items()},
        {k: np.asarray(v) for k, v in shadow.items()},
        live_s=kw.pop("live_s", 0.001),
        shadow_s=kw.pop("shadow_s", 0.002),
        **kw,
    )
    # Everything stored goes through JSON: the summary must hold after the round trip.
    stored: dict[str, Any] = json.loads(json.dumps(comparison.to_json()))
    return stored


def test_labels_give_the_agreement_rate_and_a_confusion_table() -> None:
    out = summary(compared({"label": [0, 1, 2, 2]}, {"label": [0, 1, 1, 2]}))["outputs"]["label"]
    assert out["kind"] == "labels"
    assert out["agreement"] == 0.75
    assert out["confusion"] == {"0": {"0": 1}, "1": {"1": 1}, "2": {"1": 1, "2": 1}}


def test_string_labels_compare_as_labels() -> None:
    out = summary(compared({"label": ["a", "b"]}, {"label": ["a", "a"]}))["outputs"]["label"]
    assert out["agreement"] == 0.5 and out["confusion"] == {"a": {"a": 1}, "b": {"a": 1}}


def test_probabilities_give_mean_absolute_and_relative_differences() -> None:
    live = {"probabilities": [[0.5, 0.5], [1.0, 0.0]]}
    shadow = {"probabilities": [[0.4, 0.6], [1.0, 0.0]]}
    out = summary(compared(live, shadow))["outputs"]["probabilities"]
    assert out["kind"] == "values"
    assert out["mean_abs_difference"] == pytest.approx(0.05)
    # |0.1| / 0.5 and |0.1| / 0.6, and two zeros (0 / 0 counts as no difference).
    assert out["mean_rel_difference"] == pytest.approx((0.1 / 0.5 + 0.1 / 0.6) / 4)
    assert out["abs_difference"]["p99"] == pytest.approx(0.1, rel=0.15)
    assert out["abs_difference"]["p50"] == 0.0


def test_embeddings_give_the_cosine_similarity() -> None:
    live = {"embedding": np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]], dtype=np.float32)}
    shadow = {"embedding": np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=np.float32)}
    out = summary(compared(live, shadow))["outputs"]["embedding"]
    assert out["kind"] == "embeddings"
    assert out["mean_cosine"] == pytest.approx((2 + 2**-0.5) / 3)
    assert out["cosine"]["p1"] == pytest.approx(2**-0.5, abs=0.05)
    assert out["cosine"]["p50"] == pytest.approx(1.0)


def test_an_embedding_model_s_float_rows_are_embeddings_whatever_their_name() -> None:
    live = {"vec": [[1.0, 0.0]]}
    assert summary(compared(live, live, embedding=True))["outputs"]["vec"]["mean_cosine"] == 1.0
    assert summary(compared(live, live))["outputs"]["vec"]["kind"] == "values"


def test_outputs_of_another_shape_or_missing_are_mismatched() -> None:
    out = summary(compared({"a": [1, 2], "b": [1.0]}, {"a": [1, 2, 3]}))["outputs"]
    assert out["a"]["mismatched"] == 1 and out["b"]["mismatched"] == 1
    assert "agreement" not in out["a"]


def test_latency_differences_are_in_milliseconds() -> None:
    out = summary(compared({"label": [1]}, {"label": [1]}, live_s=0.010, shadow_s=0.030))
    assert out["latency_ms"]["mean_difference"] == pytest.approx(20.0)
    # Each quantile is within a bucket (about 13%) of the true value.
    assert out["latency_ms"]["p50_difference"] == pytest.approx(20.0, abs=0.13 * 40)


def test_merging_adds_everything_up() -> None:
    a = compared({"label": [0, 1]}, {"label": [0, 0]})
    b = compared({"label": [1, 1]}, {"label": [1, 1]})
    dropped = Comparison()
    dropped.drop()
    total = summary(merge(merge(a, b), dropped.to_json()))
    assert total["compared"] == 2 and total["dropped"] == 1
    assert total["outputs"]["label"]["rows"] == 4
    assert total["outputs"]["label"]["agreement"] == 0.75
    assert total["outputs"]["label"]["confusion"] == {"0": {"0": 1}, "1": {"0": 1, "1": 2}}
    assert merge({}, a) == a and merge(a, {}) == a


def test_merging_leaves_its_arguments_alone() -> None:
    a = compared({"label": [0]}, {"label": [0]})
    before = json.dumps(a, sort_keys=True)
    merge({}, a)
    merge(a, a)
    assert json.dumps(a, sort_keys=True) == before


def test_confusion_tables_keep_a_bounded_number_of_labels() -> None:
    labels = np.arange(3 * MAX_LABELS)
    comparison = Comparison()
    for _ in range(2):
        comparison.add({"label": labels}, {"label": labels + 1}, live_s=0.0, shadow_s=0.0)
    table = summary(comparison.to_json())["outputs"]["label"]["confusion"]
    assert len(table) == MAX_LABELS
    assert sum(sum(row.values()) for row in table.values()) == 2 * labels.size
    assert "(other)" in table
