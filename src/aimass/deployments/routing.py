"""Choosing one of a deployment's targets: weighted random, or sticky by a routing key.

A :class:`Split` holds a deployment's targets and their weights (tenths of a
percent, as in a spec). :meth:`Split.pick` draws one at random in proportion
to the weights: one ``random.random()`` against the cumulative weights,
found by bisection. :meth:`Split.pick_for` keeps a routing key (a user id, an
API key) on one target with weighted rendezvous hashing: each target scores
``-w / ln(h)``, ``h`` a 64-bit hash of the key and the target's label mapped
into (0, 1), and the highest score wins. A target then wins a share of the
keys equal to its share of the weight, and when weights move only the keys
whose winner changed move, about the weight moved, unlike ``hash % n``,
which re-maps nearly every key. The hash is BLAKE2b, not Python's ``hash()``,
so every process (each prefork worker, each server) sends a key to the same
target.

This runs on the request path: one target costs nothing, and a draw costs a
handful of C calls.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Sequence
from hashlib import blake2b
from itertools import accumulate
from typing import Generic, TypeVar

__all__ = ["Split"]

_T = TypeVar("_T")

# A 64-bit hash h maps to (h + 0.5) / 2**64: strictly inside (0, 1), so ln is finite and negative.
_SCALE = 2.0**-64


class Split(Generic[_T]):
    """Items with integer weights, chosen among at random or by a key (see the module docstring).

    ``choices`` are ``(item, weight, label)``: the label names the item in the
    hash, so it must be the same in every process (a reference such as
    ``iris:3``). Items of weight 0 are never chosen; at least one must weigh
    more.
    """

    __slots__ = ("_cumulative", "_items", "_labels", "_only", "_total", "_weights")

    def __init__(self, choices: Sequence[tuple[_T, int, str]]) -> None:
        live = [(item, weight, label) for item, weight, label in choices if weight > 0]
        if not live:
            raise ValueError("a split needs an item of weight above 0")
        self._items = [item for item, _, _ in live]
        self._weights = [weight for _, weight, _ in live]
        # The NUL ends the label: no label is another label followed by part of a key.
        self._labels = [label.encode() + b"\0" for _, _, label in live]
        self._cumulative = list(accumulate(self._weights))
        self._total = self._cumulative[-1]
        self._only = self._items[0] if len(live) == 1 else None

    @property
    def items(self) -> list[_T]:
        """The items that can be chosen (weight above 0), in the order given."""
        return list(self._items)

    def pick(self) -> _T:
        """One item, at random, each in proportion to its weight."""
        only = self._only
        if only is not None:
            return only
        return self._items[bisect_right(self._cumulative, random.random() * self._total)]

    def pick_for(self, key: bytes) -> _T:
        """The item ``key`` goes to: always the same for the same key and weights."""
        only = self._only
        if only is not None:
            return only
        best, best_score = 0, -1.0
        for i, label in enumerate(self._labels):
            digest = blake2b(label + key, digest_size=8).digest()
            h = (int.from_bytes(digest, "little") + 0.5) * _SCALE
            score = -self._weights[i] / math.log(h)
            if score > best_score:
                best, best_score = i, score
        return self._items[best]
