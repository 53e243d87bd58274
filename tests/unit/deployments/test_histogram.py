from __future__ import annotations

import json
import math

import numpy as np

from aimass.deployments.histogram import LOW, SIZE, Histogram, add_lists, quantile


def test_quantiles_are_within_a_bucket_of_the_exact_ones() -> None:
    values = np.random.default_rng(0).lognormal(mean=-6, sigma=1.0, size=20_000)
    histogram = Histogram()
    for value in values:
        histogram.add(float(value))
    for q in (0.5, 0.9, 0.99):
        exact = float(np.quantile(values, q))
        assert abs(histogram.quantile(q) / exact - 1) < 0.14


def test_add_many_counts_as_add_does_one_by_one() -> None:
    values = np.array([0.0, -1.0, math.nan, LOW / 10, 2e-6, 0.003, 0.5, 7.0, 1e9])
    one_by_one, at_once = Histogram(), Histogram()
    for value in values:
        one_by_one.add(float(value))
    at_once.add_many(values)
    # NaN is no value: add_many skips it, add files it under the lowest bucket.
    assert at_once.total == len(values) - 1
    one_by_one.counts[0] -= 1
    assert at_once.counts == one_by_one.counts


def test_zero_reads_as_zero_and_the_top_bucket_as_its_edge() -> None:
    assert quantile(Histogram([5]).counts, 0.5) == 0.0
    top = Histogram()
    top.add(1e9)
    assert top.to_json()[-1] == 1 and len(top.to_json()) == SIZE
    assert top.quantile(0.5) == 1e4


def test_merged_lists_give_the_histogram_of_all_the_values() -> None:
    a, b, both = Histogram(), Histogram(), Histogram()
    for value in (0.001, 0.002, 0.5):
        a.add(value)
        both.add(value)
    for value in (0.004, 3.0):
        b.add(value)
        both.add(value)
    assert add_lists(a.to_json(), b.to_json()) == both.to_json()
    merged = Histogram(a.to_json())
    merged.merge(b.to_json())
    assert merged.counts == both.counts


def test_the_json_form_is_trimmed_and_round_trips() -> None:
    histogram = Histogram()
    histogram.add(0.001)
    encoded = json.loads(json.dumps(histogram.to_json()))
    assert encoded[-1] == 1 and len(encoded) < SIZE
    assert Histogram(encoded).counts == histogram.counts


def test_an_empty_histogram_has_no_quantile() -> None:
    assert math.isnan(Histogram().quantile(0.5))
