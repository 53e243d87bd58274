"""Verifying a converted model: the rows it must reproduce and the comparison.

A conversion (to ONNX, say) is kept only when it reproduces every output of
the model, within the framework's tolerance, on a verification set: the
sample, 64 deterministic rows around it (scaled per feature), the first rows
one by one, and NaN and infinity probes. Where the model refuses non-finite
input the conversion must refuse it too; where the model answers it, the
conversion must answer alike. This module knows nothing of ONNX: serving
plans (:mod:`aimass.convert.plan`) and compression both check with it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from aimass.contract.runtime import Arrays

__all__ = ["RefusedError", "check_reproduces", "mismatch", "verification_set"]

_MAX_SAMPLE_ROWS = 256
_SYNTHETIC_ROWS = 64
# Rows also checked one by one, where shape handling (squeezed batch axes) differs.
_SINGLE_ROWS = 16
# Positions of a row that get NaN, then infinity, in the probes.
_MAX_PROBES = 64


class RefusedError(Exception):
    """The conversion cannot be made or does not reproduce the model."""


def verification_set(
    sample: Arrays, predict: Callable[[Arrays], Arrays]
) -> tuple[Arrays, list[Arrays], bool]:
    """The rows to reproduce, the non-finite probes, and whether the model refuses those.

    The conversion must answer NaN and infinity as the model does (the probes
    then join the rows), or refuse them where the model refuses them.
    """
    for name, value in sample.items():
        if value.ndim < 2 or value.dtype.kind not in "fiu" or 0 in value.shape:
            raise RefusedError(f"input {name!r} is not numeric rows ({value.dtype}, {value.shape})")
    rows = _verification_rows(sample)
    probes = _non_finite_probes(rows)
    answered = [_answers(predict, probe) for probe in probes]
    if any(answered) and not all(answered):
        raise RefusedError("the model answers some NaN or infinity inputs but not others")
    finite_only = bool(probes) and not any(answered)
    if not finite_only:
        rows = {name: np.concatenate([rows[name], *(p[name] for p in probes)]) for name in rows}
    return rows, probes, finite_only


def check_reproduces(
    run: Callable[[Arrays], Arrays],
    rows: Arrays,
    refused: list[Arrays],
    predict: Callable[[Arrays], Arrays],
    *,
    rtol: float,
    atol: float,
) -> None:
    """RefusedError unless ``run`` reproduces ``predict`` on the rows and refuses ``refused``.

    The rows are checked as one batch and the first of them one by one.
    """
    total = len(next(iter(rows.values())))
    singles = ({k: v[i : i + 1] for k, v in rows.items()} for i in range(min(total, _SINGLE_ROWS)))
    for batch in [rows, *singles]:
        reason = mismatch(predict(batch), run(batch), rtol=rtol, atol=atol)
        if reason is not None:
            raise RefusedError(f"on {len(next(iter(batch.values())))} row(s): {reason}")
    if any(_answers(run, probe) for probe in refused):
        raise RefusedError("the conversion answers non-finite input that the model refuses")


def _verification_rows(sample: Arrays) -> Arrays:
    """The sample plus deterministic rows around it, scaled per feature, in its dtypes."""
    count = min(len(value) for value in sample.values())
    rng = np.random.default_rng(0)
    picks = rng.integers(min(count, _MAX_SAMPLE_ROWS), size=_SYNTHETIC_ROWS)
    rows = {}
    for name, value in sample.items():
        value = value[: min(count, _MAX_SAMPLE_ROWS)]
        base = value.astype(np.float64)
        base = np.where(np.isfinite(base), base, 0.0)
        # A feature's spread, else its magnitude, else 1: a sample of zeros
        # still gives rows that exercise every weight.
        scale = base.std(axis=0)
        scale = np.where(scale > 0, scale, np.abs(base.mean(axis=0)))
        scale = np.where(scale > 0, scale, 1.0)
        synthetic = base[picks] + rng.normal(size=(_SYNTHETIC_ROWS, *base.shape[1:])) * scale
        if value.dtype.kind in "iu":
            info = np.iinfo(value.dtype)
            synthetic = np.clip(np.rint(synthetic), info.min, info.max)
        rows[name] = np.concatenate([value, synthetic.astype(value.dtype)])
    return rows


def _non_finite_probes(rows: Arrays) -> list[Arrays]:
    """Batches of the first row with NaN, then infinity, at one position of one float input per row.

    A row of up to :data:`_MAX_PROBES` values is probed everywhere; a longer
    one at that many evenly spaced positions.
    """
    first = {name: value[:1] for name, value in rows.items()}
    probes = []
    for name, value in rows.items():
        if value.dtype.kind != "f":
            continue
        width = int(np.prod(value.shape[1:]))
        positions = np.unique(np.linspace(0, width - 1, min(width, _MAX_PROBES)).astype(int))
        for bad in (np.nan, np.inf):
            probe = {k: np.repeat(v, len(positions), axis=0) for k, v in first.items()}
            flat = probe[name].reshape(len(positions), width)
            flat[np.arange(len(positions)), positions] = bad
            probes.append(probe)
    return probes


def _answers(predict: Callable[[Arrays], Arrays], rows: Arrays) -> bool:
    try:
        predict(rows)
    except Exception:  # scikit-learn's ValueError "Input contains NaN", or any refusal
        return False
    return True


def mismatch(expected: Arrays, got: Arrays, *, rtol: float, atol: float) -> str | None:
    """Why ``got`` does not reproduce ``expected``, or None when it does.

    The names must be the same in the same order, each output the same dtype
    and shape; floats equal within ``rtol`` and ``atol`` (NaN where NaN),
    everything else (labels, integers, text) exactly equal.
    """
    if list(got) != list(expected):
        return f"outputs {list(got)} instead of {list(expected)}"
    for name, want in expected.items():
        have = got[name]
        if have.dtype != want.dtype or have.shape != want.shape:
            return f"{name!r} is {have.dtype}{have.shape}, not {want.dtype}{want.shape}"
        if want.dtype.kind == "f":
            same = np.allclose(have, want, rtol=rtol, atol=atol, equal_nan=True)
        else:
            same = np.array_equal(have, want)
        if not same:
            return f"{name!r} differs"
    return None
