"""The pure choice of a target: weighted draws and rendezvous hashing that moves about w."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from aimass.deployments.routing import Split


def _shares(split: Split[str], draws: int) -> dict[str, float]:
    counted = Counter(split.pick() for _ in range(draws))
    return {item: n / draws for item, n in counted.items()}


def test_draws_follow_the_weights_within_binomial_tolerance() -> None:
    random.seed(7)
    draws = 20_000
    shares = _shares(Split([("a", 700, "a:1"), ("b", 200, "b:1"), ("c", 100, "c:1")]), draws)
    for item, weight in (("a", 0.7), ("b", 0.2), ("c", 0.1)):
        sigma = (weight * (1 - weight) / draws) ** 0.5
        assert abs(shares[item] - weight) < 4 * sigma, (item, shares)


def test_zero_weights_are_never_chosen_and_a_lone_target_always_is() -> None:
    split = Split([("a", 0, "a:1"), ("b", 1000, "b:1")])
    assert {split.pick() for _ in range(200)} == {"b"}
    assert {split.pick_for(str(i).encode()) for i in range(200)} == {"b"}
    assert split.items == ["b"]


def test_a_split_of_only_zero_weights_is_refused() -> None:
    with pytest.raises(ValueError, match="weight above 0"):
        Split([("a", 0, "a:1")])


def test_keys_stick_and_spread_by_weight() -> None:
    split = Split([("a", 800, "iris:1"), ("b", 200, "iris:2")])
    keys = [f"user-{i}".encode() for i in range(10_000)]
    first = [split.pick_for(key) for key in keys]
    assert first == [split.pick_for(key) for key in keys]
    share = first.count("b") / len(keys)
    assert abs(share - 0.2) < 4 * (0.2 * 0.8 / len(keys)) ** 0.5


def test_moving_weight_w_remaps_about_w_of_the_keys() -> None:
    keys = [f"user-{i}".encode() for i in range(10_000)]
    before = Split([("a", 900, "iris:1"), ("b", 100, "iris:2")])
    after = Split([("a", 800, "iris:1"), ("b", 200, "iris:2")])
    moved = sum(before.pick_for(k) != after.pick_for(k) for k in keys) / len(keys)
    assert 0.08 < moved < 0.12
    # And only towards the target that gained: nobody leaves b.
    assert all(after.pick_for(k) == "b" for k in keys if before.pick_for(k) == "b")


def test_adding_a_target_takes_keys_from_every_other_in_proportion() -> None:
    keys = [f"k{i}".encode() for i in range(10_000)]
    two = Split([("a", 500, "m:1"), ("b", 500, "m:2")])
    three = Split([("a", 450, "m:1"), ("b", 450, "m:2"), ("c", 100, "m:3")])
    moved = [k for k in keys if two.pick_for(k) != three.pick_for(k)]
    assert all(three.pick_for(k) == "c" for k in moved)
    assert 0.08 < len(moved) / len(keys) < 0.12


def test_the_hash_is_the_same_in_every_process() -> None:
    # Pinned answers: Python's own hash() is salted per process, so a split
    # built on it would send one user to different versions in two workers.
    split = Split([("a", 500, "iris:1"), ("b", 500, "iris:2")])
    assert [split.pick_for(f"user-{i}".encode()) for i in range(8)] == PINNED


PINNED = ["a", "a", "a", "b", "a", "a", "b", "b"]
