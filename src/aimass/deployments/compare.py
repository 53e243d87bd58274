"""Comparing a shadow's answers with the live ones: accumulators that merge by addition.

A :class:`Comparison` fills in place as a shadow's answers come in; stored,
it is a JSON dict of counts, sums and histogram lists
(:mod:`~aimass.deployments.histogram`), so a window's comparison over many
servers and time buckets is the sum of theirs (:func:`merge`), and
:func:`summary` turns the sum into the rates, means and quantiles people
read. Each output is compared by what it holds:

* class labels (integers, strings, booleans; one per row): the agreement
  rate and a live x shadow confusion table;
* probabilities and regression values (floats): the mean absolute and mean
  relative difference, element by element, and their distribution;
  "relative" is ``|shadow - live| / max(|shadow|, |live|)``, which stays
  between 0 and 2 and is 0 when both are 0, where dividing by the live value
  alone would explode on the many probabilities near 0;
* embeddings (float rows of an embedding model, or an output named
  ``embedding``): the cosine similarity of each row, its mean and
  distribution (kept as the distance ``1 - cos`` in the log buckets, where
  the interesting values, near 1, get fine buckets).

Every pair also adds the live and the shadow latency, so the difference of
their means and quantiles is read over the same requests. An output whose
shape or kind differs between the two is counted as ``mismatched``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from aimass.contract.runtime import Arrays
from aimass.deployments.histogram import Histogram, add_lists, quantile

__all__ = ["MAX_LABELS", "Comparison", "merge", "summary"]

MAX_LABELS = 50
"""Distinct labels a confusion table keeps per side; the rest count under ``(other)``."""

_OTHER = "(other)"
_LABEL_CHARS = 64
_QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
_LOW_QUANTILES = (("p1", 0.01), ("p10", 0.1), ("p50", 0.5))


class Comparison:
    """The running comparison of one shadow with the live answers, in one time bucket.

    Filled in place as shadow answers come in (cheaply: no JSON until
    :meth:`to_json`), then stored and merged as JSON (:func:`merge`).
    """

    __slots__ = (
        "compared",
        "dropped",
        "live_latency",
        "live_s",
        "outputs",
        "shadow_latency",
        "shadow_s",
    )

    def __init__(self) -> None:
        self.compared = 0
        self.dropped = 0
        self.live_s = 0.0
        self.shadow_s = 0.0
        self.live_latency = Histogram()
        self.shadow_latency = Histogram()
        self.outputs: dict[str, _Output] = {}

    def add(
        self,
        live: Arrays,
        shadow: Arrays,
        *,
        live_s: float,
        shadow_s: float,
        embedding: bool = False,
    ) -> None:
        """Compare one request's live and shadow outputs and latencies.

        ``embedding``: the request asked for embeddings (its float outputs are).
        """
        self.add_many(live, shadow, live_s=(live_s,), shadow_s=shadow_s, embedding=embedding)

    def add_many(
        self,
        live: Arrays,
        shadow: Arrays,
        *,
        live_s: Sequence[float],
        shadow_s: float,
        embedding: bool = False,
    ) -> None:
        """Compare several requests the shadow answered in one call, as :meth:`add` compares one.

        The outputs hold the requests' rows in order, ``live_s`` is each
        request's live latency and ``shadow_s`` the shadow call's (each
        request's shadow latency).
        """
        requests = len(live_s)
        self.compared += requests
        self.live_s += sum(live_s)
        self.shadow_s += shadow_s * requests
        for seconds in live_s:
            self.live_latency.add(seconds)
            self.shadow_latency.add(shadow_s)
        for name, ours in live.items():
            kind = _kind(name, ours, embedding)
            output = self.outputs.get(name)
            if output is None:
                output = self.outputs[name] = _Output(kind)
            theirs = shadow.get(name)
            if (
                theirs is None
                or theirs.shape != ours.shape
                or _kind(name, theirs, embedding) != kind
                or output.kind != kind
            ):
                output.mismatched += requests
            elif kind == "labels":
                output.add_labels(ours, theirs)
            elif kind == "embeddings":
                output.add_embeddings(ours, theirs)
            else:
                output.add_values(ours, theirs)

    def drop(self) -> None:
        """Count one copy the shadow did not get (it was beyond its concurrency bound)."""
        self.dropped += 1

    def to_json(self) -> dict[str, Any]:
        """The comparison as JSON, the form :func:`merge` adds and :func:`summary` reads."""
        out: dict[str, Any] = {"compared": self.compared, "dropped": self.dropped}
        if self.compared:
            out["live_s"] = self.live_s
            out["shadow_s"] = self.shadow_s
            out["live_latency"] = self.live_latency.to_json()
            out["shadow_latency"] = self.shadow_latency.to_json()
            out["outputs"] = {name: o.to_json() for name, o in self.outputs.items()}
        return out


def merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """The sum of two comparisons' JSON: numbers add, histogram lists add, dicts merge.

    Confusion tables keep at most :data:`MAX_LABELS` labels a side.
    """
    merged = _add(a, b)
    for output in merged.get("outputs", {}).values():
        if output.get("kind") == "labels" and "confusion" in output:
            output["confusion"] = _capped(output["confusion"])
    return merged


def summary(comparison: Mapping[str, Any]) -> dict[str, Any]:
    """What a comparison says: per output the agreement, differences or similarity; latency.

    Latencies and their differences are in milliseconds.
    """
    compared = int(comparison.get("compared", 0))
    out: dict[str, Any] = {"compared": compared, "dropped": int(comparison.get("dropped", 0))}
    if compared:
        live, shadow = comparison["live_latency"], comparison["shadow_latency"]
        out["latency_ms"] = {
            "live_mean": comparison["live_s"] / compared * 1000,
            "shadow_mean": comparison["shadow_s"] / compared * 1000,
            "mean_difference": (comparison["shadow_s"] - comparison["live_s"]) / compared * 1000,
            **{
                f"{label}_difference": (quantile(shadow, q) - quantile(live, q)) * 1000
                for label, q in _QUANTILES
            },
        }
    out["outputs"] = {
        name: _summary(output) for name, output in sorted(comparison.get("outputs", {}).items())
    }
    return out


# -- one output ---------------------------------------------------------------------


def _kind(name: str, array: np.ndarray[Any, Any], embedding: bool) -> str:
    floating = array.dtype.kind in "fc"
    if not floating and array.dtype.kind in "biuUSOT" and _per_row(array.shape) == 1:
        return "labels"
    if floating and array.ndim >= 2 and (embedding or name in ("embedding", "embeddings")):
        return "embeddings"
    return "values"


def _per_row(shape: tuple[int, ...]) -> int:
    return math.prod(shape[1:]) if shape else 1


class _Output:
    """One output's running comparison; which fields fill depends on its kind."""

    __slots__ = (
        "abs",
        "abs_sum",
        "agree",
        "confusion",
        "cosine_sum",
        "distance",
        "kind",
        "mismatched",
        "n",
        "rel",
        "rel_sum",
    )

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.mismatched = 0
        self.n = 0  # rows for labels and embeddings, elements for values
        self.agree = 0
        self.confusion: dict[str, dict[str, int]] = {}
        self.abs_sum = self.rel_sum = self.cosine_sum = 0.0
        self.abs = Histogram()
        self.rel = Histogram()
        self.distance = Histogram()

    def add_labels(self, live: np.ndarray[Any, Any], shadow: np.ndarray[Any, Any]) -> None:
        confusion = self.confusion
        for a, b in zip(live.reshape(-1).tolist(), shadow.reshape(-1).tolist(), strict=True):
            ours, theirs = _label(a), _label(b)
            row = confusion.get(ours)
            if row is None:
                row = confusion[ours] = {}
            row[theirs] = row.get(theirs, 0) + 1
            self.agree += ours == theirs
            self.n += 1
        if len(confusion) > 2 * MAX_LABELS:  # bounded memory, whatever the labels
            self.confusion = _capped(confusion)

    def add_values(self, live: np.ndarray[Any, Any], shadow: np.ndarray[Any, Any]) -> None:
        ours = live.astype(np.float64, copy=False).ravel()
        theirs = shadow.astype(np.float64, copy=False).ravel()
        difference = np.abs(theirs - ours)
        scale = np.maximum(np.abs(ours), np.abs(theirs))
        with np.errstate(invalid="ignore", divide="ignore"):
            relative = np.where(scale > 0, difference / scale, 0.0)
        finite = np.isfinite(difference)
        if not finite.all():
            difference, relative = difference[finite], relative[finite]
        self.n += int(difference.size)
        self.abs_sum += float(difference.sum())
        self.rel_sum += float(relative.sum())
        self.abs.add_many(difference)
        self.rel.add_many(relative)

    def add_embeddings(self, live: np.ndarray[Any, Any], shadow: np.ndarray[Any, Any]) -> None:
        ours = live.astype(np.float64, copy=False).reshape(live.shape[0], -1)
        theirs = shadow.astype(np.float64, copy=False).reshape(shadow.shape[0], -1)
        norms = np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cosine = np.clip(np.einsum("ij,ij->i", ours, theirs) / norms, -1.0, 1.0)
        cosine = cosine[np.isfinite(cosine)]
        self.n += int(cosine.size)
        self.cosine_sum += float(cosine.sum())
        self.distance.add_many(1.0 - cosine)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "mismatched": self.mismatched}
        if self.kind == "labels":
            out.update(rows=self.n, agree=self.agree, confusion=_capped(self.confusion))
        elif self.kind == "embeddings":
            out.update(rows=self.n, cosine_sum=self.cosine_sum, distance=self.distance.to_json())
        else:
            out.update(
                n=self.n,
                abs_sum=self.abs_sum,
                rel_sum=self.rel_sum,
                abs=self.abs.to_json(),
                rel=self.rel.to_json(),
            )
        return out


def _label(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value)[:_LABEL_CHARS]


def _summary(output: Mapping[str, Any]) -> dict[str, Any]:
    kind = output.get("kind")
    out: dict[str, Any] = {"kind": kind, "mismatched": int(output.get("mismatched", 0))}
    if kind == "labels" and output.get("rows"):
        out["rows"] = output["rows"]
        out["agreement"] = output["agree"] / output["rows"]
        out["confusion"] = output["confusion"]
    elif kind == "values" and output.get("n"):
        n = output["n"]
        out["n"] = n
        out["mean_abs_difference"] = output["abs_sum"] / n
        out["mean_rel_difference"] = output["rel_sum"] / n
        out["abs_difference"] = {label: quantile(output["abs"], q) for label, q in _QUANTILES}
        out["rel_difference"] = {label: quantile(output["rel"], q) for label, q in _QUANTILES}
    elif kind == "embeddings" and output.get("rows"):
        rows = output["rows"]
        out["rows"] = rows
        out["mean_cosine"] = output["cosine_sum"] / rows
        # The low tail is what matters (rows the shadow embeds differently), and a
        # low quantile of the similarity is a high quantile of the distance.
        out["cosine"] = {
            label: 1.0 - quantile(output["distance"], 1.0 - q) for label, q in _LOW_QUANTILES
        }
    return out


# -- merging --------------------------------------------------------------------------


def _add(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(a)
    for key, value in b.items():
        mine = merged.get(key)
        if mine is None:
            merged[key] = _copy(value)
        elif isinstance(value, Mapping):
            merged[key] = _add(mine, value)
        elif isinstance(value, list):
            merged[key] = add_lists(mine, value)
        elif isinstance(value, str):
            continue  # a kind: the same on both sides, or the output changed kind (first wins)
        else:
            merged[key] = mine + value
    return merged


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _add({}, value)
    return list(value) if isinstance(value, list) else value


def _capped(confusion: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The table with at most MAX_LABELS labels a side, the least frequent folded into other."""
    live = _kept({a: sum(row.values()) for a, row in confusion.items()})
    totals: dict[str, int] = {}
    for row in confusion.values():
        for b, n in row.items():
            totals[b] = totals.get(b, 0) + n
    shadow = _kept(totals)
    if len(live) == len(confusion) and len(shadow) == len(totals):
        return confusion
    capped: dict[str, dict[str, int]] = {}
    for a, row in confusion.items():
        into = capped.setdefault(a if a in live else _OTHER, {})
        for b, n in row.items():
            key = b if b in shadow else _OTHER
            into[key] = into.get(key, 0) + n
    return capped


def _kept(totals: Mapping[str, int]) -> set[str]:
    if len(totals) <= MAX_LABELS:
        return set(totals)
    named = [label for label in totals if label != _OTHER]
    ranked = sorted(named, key=lambda label: (-totals[label], label))
    return {*ranked[: MAX_LABELS - 1], _OTHER}
