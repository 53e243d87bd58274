"""The ONNX serving plan of a scikit-learn model: convert, verify, run.

A plan is the estimator converted by skl2onnx (float64 input, no ZipMap) and
run by onnxruntime. It is written at save time only when it reproduces every
output of the estimator on a verification set, and the loader then serves
predictions through it without importing scikit-learn. See
:mod:`aimass.runtimes.sklearn` for when plans are made and how to turn them off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aimass.errors import AimassError, ErrorCode
from aimass.registry.manifest import Manifest
from aimass.registry.signature import Signature
from aimass.runtimes.base import Arrays
from aimass.runtimes.onnx import open_session

__all__ = ["ATOL", "PLAN_FILE", "RTOL", "Plan", "make_plan", "mismatch", "open_plan"]

_log = logging.getLogger(__name__)

PLAN_FILE = "serving.onnx"
# Floats must agree to about a millionth of a part per million: what separates
# two float64 evaluations of the same formula, not a float32 approximation.
RTOL = 1e-9
ATOL = 1e-12

_INPUT = "input"
# An output the plan adds to the graph when it must refuse non-finite input.
_GUARD = "aimass_nonfinite"
_MAX_SAMPLE_ROWS = 256
_SYNTHETIC_ROWS = 64
# Rows also checked one by one, where shape handling (squeezed batch axes) differs.
_SINGLE_ROWS = 16


class Plan:
    """An onnxruntime session giving a scikit-learn model's outputs, by the signature's names.

    ``outputs`` maps each output of the signature to the graph's output. When
    ``finite_only``, the graph also computes :data:`_GUARD` (NaN unless every
    input value is finite) and non-finite input is refused, as scikit-learn does.
    """

    def __init__(
        self,
        session: Any,
        outputs: Mapping[str, str],
        signature: Signature,
        *,
        finite_only: bool,
    ) -> None:
        self.session = session
        self._names = [s.name for s in signature.outputs]
        self._fetch = [outputs[name] for name in self._names]
        if finite_only:
            self._fetch.append(_GUARD)
        self._finite_only = finite_only
        self._fixes = _fixes(session, self._fetch, signature)

    def run(self, inputs: Arrays) -> Arrays:
        """Predict on the single ``input`` matrix, as the estimator would."""
        x = inputs[_INPUT]
        if x.dtype != np.float64:
            x = x.astype(np.float64)
        values = self.session.run(self._fetch, {_INPUT: x})
        if self._finite_only and values[-1].item() != 0.0:
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"input '{_INPUT}' contains NaN or infinity, which this model does not accept",
                field=_INPUT,
            )
        outputs = dict(zip(self._names, values, strict=False))  # the guard, last, is left out
        for name, dtype, flat in self._fixes:
            value = outputs[name].astype(dtype, copy=False)
            outputs[name] = value.reshape(len(value)) if flat else value
        return outputs


def _fixes(
    session: Any, fetch: list[str], signature: Signature
) -> list[tuple[str, np.dtype[Any], bool]]:
    """The outputs whose dtype or shape differ from the signature's, found from one row.

    skl2onnx returns (n, 1) where scikit-learn returns (n,), and int64 labels
    for booleans; only those outputs are converted on each call.
    """
    width = signature.inputs[0].shape[1]
    values = session.run(fetch, {_INPUT: np.zeros((1, width))})
    fixes = []
    for spec, value in zip(signature.outputs, values, strict=False):
        dtype, flat = spec.datatype.numpy, len(spec.shape) == 1 and value.ndim == 2
        if value.dtype != dtype or flat:
            fixes.append((spec.name, dtype, flat))
    return fixes


def open_plan(directory: Path, manifest: Manifest) -> Plan | None:
    """The version's plan, or None when it has none or onnxruntime cannot run it here."""
    entry = manifest.options.get("onnx_plan")
    if entry is None:
        return None
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    name = str(entry["file"])
    if Path(name).name != name:
        _log.warning("ignoring an ONNX serving plan outside the version directory: %r", name)
        return None
    try:
        session = open_session(ort, directory / name, 1)
        return Plan(session, entry["outputs"], manifest.signature, finite_only=entry["finite_only"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        _log.warning("the ONNX serving plan does not run (%s); serving with scikit-learn", exc)
        return None


def make_plan(
    obj: Any,
    sample: Any,
    directory: Path,
    signature: Signature,
    predict: Callable[[Any], Arrays],
) -> dict[str, Any] | None:
    """Convert ``obj``, verify it, write it; its manifest entry, or None when there is no plan.

    ``predict`` gives the estimator's named outputs on a matrix, the reference
    the plan must reproduce. Nothing here fails the save: any error only means
    the model is served by scikit-learn.
    """
    try:
        return _make(obj, np.asarray(sample), directory, signature, predict)
    except Exception as exc:  # an unsupported estimator, a converter bug, a mismatch
        (directory / PLAN_FILE).unlink(missing_ok=True)
        _log.info("no ONNX serving plan for this %s: %s", type(obj).__name__, exc)
        return None


class _RefusedError(Exception):
    """The conversion does not reproduce the estimator."""


def _make(
    obj: Any,
    sample: np.ndarray[Any, Any],
    directory: Path,
    signature: Signature,
    predict: Callable[[Any], Arrays],
) -> dict[str, Any]:
    import onnxruntime as ort
    import skl2onnx
    from skl2onnx.common.data_types import DoubleTensorType

    if sample.ndim != 2 or sample.dtype.kind not in "fiu" or 0 in sample.shape:
        raise _RefusedError(f"the input is not a numeric matrix ({sample.dtype}, {sample.shape})")
    rows = _verification_rows(sample)
    # The plan must answer NaN and infinity as the estimator does, or refuse
    # them where it refuses them (with INVALID_INPUT rather than an error).
    probes = _non_finite_probes(rows)
    answered = [_answers(predict, probe) for probe in probes]
    if any(answered) and not all(answered):
        raise _RefusedError("the estimator answers NaN or infinity but not both")
    finite_only = bool(probes) and not any(answered)
    if not finite_only:
        rows = np.concatenate([rows, *probes])
    options = {id(obj): {"zipmap": False}} if hasattr(obj, "predict_proba") else None
    model = skl2onnx.convert_sklearn(
        obj, initial_types=[(_INPUT, DoubleTensorType([None, rows.shape[1]]))], options=options
    )
    if finite_only:
        _add_guard(model)
    path = directory / PLAN_FILE
    path.write_bytes(model.SerializeToString())
    # Verified through the file just written, as the loader will open it.
    session = open_session(ort, path, 1)
    names = [s.name for s in signature.outputs]
    onnx_names = [o.name for o in session.get_outputs() if o.name != _GUARD]
    if len(onnx_names) < len(names):
        raise _RefusedError(f"the ONNX graph has outputs {onnx_names} for {names}")
    outputs = dict(zip(names, onnx_names, strict=False))
    plan = Plan(session, outputs, signature, finite_only=finite_only)
    for batch in [rows, *(rows[i : i + 1] for i in range(min(len(rows), _SINGLE_ROWS)))]:
        reason = mismatch(predict(batch), plan.run({_INPUT: batch}))
        if reason is not None:
            raise _RefusedError(f"on {len(batch)} row(s): {reason}")
    if finite_only and any(_answers(lambda x: plan.run({_INPUT: x}), p) for p in probes):
        raise _RefusedError("the plan answers non-finite input that the estimator refuses")
    return {
        "file": PLAN_FILE,
        "outputs": outputs,
        "finite_only": finite_only,
        "tolerance": {"rtol": RTOL, "atol": ATOL},
        "verified_rows": len(rows),
        "converter": f"skl2onnx {skl2onnx.__version__}",
    }


def _add_guard(model: Any) -> None:
    """Add the :data:`_GUARD` output: the sum of input * 0, which is 0 unless a value is not finite.

    Computed in the graph because a numpy check beside ``session.run`` costs
    more than the graph's own work on small batches.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    zero, masked = f"{_GUARD}_zero", f"{_GUARD}_masked"
    graph.initializer.append(numpy_helper.from_array(np.zeros((), dtype=np.float64), zero))
    graph.node.append(helper.make_node("Mul", [_INPUT, zero], [masked]))
    graph.node.append(helper.make_node("ReduceSum", [masked], [_GUARD], keepdims=0))
    graph.output.append(helper.make_tensor_value_info(_GUARD, TensorProto.DOUBLE, []))


def _verification_rows(sample: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The sample plus deterministic rows around it, scaled per feature, in its dtype."""
    sample = sample[:_MAX_SAMPLE_ROWS]
    base = sample.astype(np.float64)
    base = np.where(np.isfinite(base), base, 0.0)
    # A feature's spread, else its magnitude, else 1: a sample of zeros still
    # gives rows that exercise every coefficient.
    scale = base.std(axis=0)
    scale = np.where(scale > 0, scale, np.abs(base.mean(axis=0)))
    scale = np.where(scale > 0, scale, 1.0)
    rng = np.random.default_rng(0)
    picks = rng.integers(len(base), size=_SYNTHETIC_ROWS)
    synthetic = base[picks] + rng.normal(size=(_SYNTHETIC_ROWS, base.shape[1])) * scale
    if sample.dtype.kind in "iu":
        info = np.iinfo(sample.dtype)
        synthetic = np.clip(np.rint(synthetic), info.min, info.max)
    return np.concatenate([sample, synthetic.astype(sample.dtype)])


def _non_finite_probes(rows: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
    """Copies of the first row with NaN, then infinity, in each feature in turn (floats only)."""
    if rows.dtype.kind != "f":
        return []
    width = rows.shape[1]
    probes = []
    for bad in (np.nan, np.inf):
        probe = np.repeat(rows[:1], width, axis=0)
        probe[np.arange(width), np.arange(width)] = bad
        probes.append(probe)
    return probes


def _answers(predict: Callable[[Any], Arrays], rows: np.ndarray[Any, Any]) -> bool:
    try:
        predict(rows)
    except Exception:  # scikit-learn's ValueError "Input contains NaN", or any refusal
        return False
    return True


def mismatch(expected: Arrays, got: Arrays) -> str | None:
    """Why ``got`` does not reproduce ``expected``, or None when it does.

    The names must be the same in the same order, each output the same dtype
    and shape; floats equal within :data:`RTOL` and :data:`ATOL` (NaN where
    NaN), everything else (labels, integers, text) exactly equal.
    """
    if list(got) != list(expected):
        return f"outputs {list(got)} instead of {list(expected)}"
    for name, want in expected.items():
        have = got[name]
        if have.dtype != want.dtype or have.shape != want.shape:
            return f"{name!r} is {have.dtype}{have.shape}, not {want.dtype}{want.shape}"
        if want.dtype.kind == "f":
            same = np.allclose(have, want, rtol=RTOL, atol=ATOL, equal_nan=True)
        else:
            same = np.array_equal(have, want)
        if not same:
            return f"{name!r} differs"
    return None
