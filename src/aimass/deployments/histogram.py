"""A fixed log-bucket histogram: counts that merge by adding lists, quantiles from merged counts.

Latencies, output differences and cosine distances all land in the same
buckets, ten to a decade from 1e-6 to 1e4 (each about 26% wide), with one
bucket below (zero included) and one above. Every process and every time
bucket uses the same edges, so histograms from many servers merge by adding
their counts element-wise, and a p99 over a window is read off the sum: no
sample is kept anywhere.

A histogram travels as a plain list of counts with trailing zeros trimmed (a
latency histogram of a fast model stops near 1e-2 s), so it is JSON as it is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["LOW", "SIZE", "Histogram", "add_lists", "quantile"]

LOW = 1e-6
"""The upper edge of the lowest bucket, which holds zero and everything below."""

_PER_DECADE = 10
_DECADES = 10
SIZE = 1 + _PER_DECADE * _DECADES + 1
"""Buckets in all: below LOW, ten per decade up to 1e4, and 1e4 and above."""

_SCALE = _PER_DECADE / math.log(10)
_LOG_LOW = math.log(LOW)


class Histogram:
    """Counts of values in the fixed log buckets (see the module docstring)."""

    __slots__ = ("counts",)

    def __init__(self, counts: Sequence[int] = ()) -> None:
        self.counts = [0] * SIZE
        for i, n in enumerate(counts[:SIZE]):
            self.counts[i] = int(n)

    def add(self, value: float) -> None:
        """Count one value."""
        # No helper call: a latency is counted for every request a deployment answers.
        if not value >= LOW:  # NaN and negatives too
            self.counts[0] += 1
        else:
            self.counts[min(SIZE - 1, int((math.log(value) - _LOG_LOW) * _SCALE) + 1)] += 1

    def add_many(self, values: np.ndarray[Any, Any]) -> None:
        """Count every value of an array at once (an output's differences, say)."""
        flat = np.asarray(values, dtype=np.float64).ravel()
        flat = flat[np.isfinite(flat)]
        if not flat.size:
            return
        with np.errstate(divide="ignore"):
            scaled = np.floor((np.log(np.maximum(flat, LOW / 2)) - _LOG_LOW) * _SCALE) + 1
        index = np.clip(scaled, 0, SIZE - 1).astype(np.int64)
        for i, n in enumerate(np.bincount(index, minlength=SIZE).tolist()):
            self.counts[i] += n

    def merge(self, other: Iterable[int]) -> None:
        """Add another histogram's counts (a list as :meth:`to_json` gives it) to these."""
        for i, n in enumerate(other):
            self.counts[i] += n

    @property
    def total(self) -> int:
        """How many values were counted."""
        return sum(self.counts)

    def quantile(self, q: float) -> float:
        """The value below which a ``q`` fraction of the counts lie (see :func:`quantile`)."""
        return quantile(self.counts, q)

    def to_json(self) -> list[int]:
        """The counts with trailing zeros trimmed."""
        return _trimmed(self.counts)


def quantile(counts: Sequence[int], q: float) -> float:
    """The ``q`` quantile (0..1) of a histogram's counts, NaN when there are none.

    It is the middle of the bucket holding the value of rank ``ceil(q * n)``
    (geometrically: the buckets are logarithmic), so it is within about 13%
    of the true value; the lowest bucket reads as 0 and the highest as 1e4.
    """
    total = sum(counts)
    if not total:
        return math.nan
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= rank:
            return _middle(i)
    return _middle(len(counts) - 1)  # unreachable: seen reaches total


def add_lists(a: Sequence[int], b: Sequence[int]) -> list[int]:
    """Two histograms' count lists added element-wise (trimmed lists may differ in length)."""
    if len(a) < len(b):
        a, b = b, a
    summed = list(a)
    for i, n in enumerate(b):
        summed[i] += n
    return summed


def _middle(index: int) -> float:
    if index <= 0:
        return 0.0
    if index >= SIZE - 1:
        return LOW * 10.0**_DECADES
    return LOW * math.pow(10.0, (index - 0.5) / _PER_DECADE)


def _trimmed(counts: Sequence[int]) -> list[int]:
    end = len(counts)
    while end and not counts[end - 1]:
        end -= 1
    return list(counts[:end])
