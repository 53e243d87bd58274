"""ONNX serving plans: a model converted to ONNX, verified against it, run by onnxruntime.

A runtime whose framework converts to ONNX (scikit-learn through skl2onnx,
PyTorch through ``torch.onnx``) may save a *plan* beside the model's own
artifact. It is kept only when onnxruntime reproduces every output of the
model, within the framework's tolerance, on a verification set: the sample,
64 deterministic rows around it (scaled per feature), the first rows one by
one, and NaN and infinity probes. Where the model refuses non-finite input,
the plan must refuse it too (a 3-node guard is added to the graph and its
answer becomes INVALID_INPUT); where the model answers it, the plan must answer
alike. Anything else (a failed conversion, a mismatch) means no plan.

The loader then answers predictions through the plan: one onnxruntime call,
which releases the GIL once, instead of the framework's per-call overhead
(scikit-learn's input validation, one PyTorch dispatch per operator).

This module does what every plan shares (the verification set, the checks,
the file, the session and running it); converting is the framework's, a
``convert`` callable given to :func:`make_plan`.
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

__all__ = ["PLAN_FILE", "Plan", "RefusedError", "make_plan", "mismatch", "open_plan"]

_log = logging.getLogger(__name__)

PLAN_FILE = "serving.onnx"

# An output the plan adds to the graph when it must refuse non-finite input.
_GUARD = "aimass_nonfinite"
_MAX_SAMPLE_ROWS = 256
_SYNTHETIC_ROWS = 64
# Rows also checked one by one, where shape handling (squeezed batch axes) differs.
_SINGLE_ROWS = 16
# Positions of a row that get NaN, then infinity, in the probes.
_MAX_PROBES = 64
_ORT_DTYPES: dict[str, np.dtype[Any]] = {
    "tensor(double)": np.dtype(np.float64),
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(bool)": np.dtype(np.bool_),
}


class RefusedError(Exception):
    """The conversion cannot be made or does not reproduce the model."""


class Plan:
    """An onnxruntime session giving a model's outputs by the signature's names.

    The graph takes the signature's inputs by name (each cast to the dtype
    the graph declares) and ``entry["outputs"]`` maps each signature output to
    a graph output. With ``entry["finite_only"]`` the graph also computes
    :data:`_GUARD` (NaN unless every input value is finite) and non-finite
    input is refused, as the model refuses it.
    """

    def __init__(self, session: Any, entry: Mapping[str, Any], signature: Signature) -> None:
        self.session = session
        self._names = [s.name for s in signature.outputs]
        self._fetch = [entry["outputs"][name] for name in self._names]
        self._finite_only = bool(entry["finite_only"])
        if self._finite_only:
            self._fetch.append(_GUARD)
        graph_inputs = {i.name: i.type for i in session.get_inputs()}
        names = [spec.name for spec in signature.inputs]
        if sorted(graph_inputs) != sorted(names):
            raise RefusedError(f"the graph takes {sorted(graph_inputs)}, not {sorted(names)}")
        self._feeds = [(name, _ORT_DTYPES[graph_inputs[name]]) for name in names]
        self._fixes = _fixes(session, self._fetch, signature, self._feeds)

    def run(self, inputs: Arrays) -> Arrays:
        """Predict on ``inputs``, as the model would."""
        feed = {}
        for name, dtype in self._feeds:
            value = inputs[name]
            feed[name] = value if value.dtype == dtype else value.astype(dtype)
        values = self.session.run(self._fetch, feed)
        if self._finite_only and values[-1].item() != 0.0:
            raise _non_finite(self._feeds)
        outputs = dict(zip(self._names, values, strict=False))  # the guard, last, is left out
        for name, dtype, flat in self._fixes:
            value = outputs[name].astype(dtype, copy=False)
            outputs[name] = value.reshape(len(value)) if flat else value
        return outputs


def _non_finite(feeds: list[tuple[str, np.dtype[Any]]]) -> AimassError:
    if len(feeds) == 1:
        name = feeds[0][0]
        return AimassError(
            ErrorCode.INVALID_INPUT,
            f"input '{name}' contains NaN or infinity, which this model does not accept",
            field=name,
        )
    return AimassError(
        ErrorCode.INVALID_INPUT,
        "an input contains NaN or infinity, which this model does not accept",
    )


def _fixes(
    session: Any, fetch: list[str], signature: Signature, feeds: list[tuple[str, np.dtype[Any]]]
) -> list[tuple[str, np.dtype[Any], bool]]:
    """The outputs whose dtype or shape differ from the signature's, found from one row.

    skl2onnx returns (n, 1) where scikit-learn returns (n,), and int64 labels
    for booleans; only those outputs are converted on each call.
    """
    shapes = {
        spec.name: [1 if size == -1 else size for size in spec.shape[1:]]
        for spec in signature.inputs
    }
    values = session.run(
        fetch, {name: np.zeros((1, *shapes[name]), dtype) for name, dtype in feeds}
    )
    fixes = []
    for spec, value in zip(signature.outputs, values, strict=False):
        dtype, flat = spec.datatype.numpy, len(spec.shape) == 1 and value.ndim == 2
        if value.dtype != dtype or flat:
            fixes.append((spec.name, dtype, flat))
    return fixes


def open_plan(directory: Path, manifest: Manifest, threads: int = 1) -> Plan | None:
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
        return Plan(open_session(ort, directory / name, threads), entry, manifest.signature)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        _log.warning("the ONNX serving plan does not run (%s); serving with the framework", exc)
        return None


def make_plan(
    convert: Callable[[Arrays], Any],
    sample: Arrays,
    directory: Path,
    signature: Signature,
    predict: Callable[[Arrays], Arrays],
    *,
    rtol: float,
    atol: float,
    converter: str,
) -> dict[str, Any] | None:
    """Convert, verify, write; the manifest entry, or None when there is no plan.

    ``convert`` gives the ONNX ``ModelProto`` of the model (taking the
    signature's input names, its outputs in the signature's order) from the
    verification rows; it raises :class:`RefusedError` for a model it cannot
    convert. ``predict`` gives the model's named outputs, the reference the
    plan must reproduce within ``rtol`` and ``atol``. Nothing here fails the
    save: any error only means the model is served by its framework.
    """
    try:
        import onnxruntime as ort

        rows, probes, finite_only = _verification_set(sample, predict)
        model = convert(rows)
        if finite_only:
            _add_guard(model)
        path = directory / PLAN_FILE
        path.write_bytes(model.SerializeToString())
        # Verified through the file just written, as the loader will open it.
        session = open_session(ort, path, 1)
        names = [s.name for s in signature.outputs]
        onnx_names = [o.name for o in session.get_outputs() if o.name != _GUARD]
        if len(onnx_names) < len(names):
            raise RefusedError(f"the ONNX graph has outputs {onnx_names} for {names}")
        entry: dict[str, Any] = {
            "file": PLAN_FILE,
            "outputs": dict(zip(names, onnx_names, strict=False)),
            "finite_only": finite_only,
        }
        refused = probes if finite_only else []
        _verify(Plan(session, entry, signature), rows, refused, predict, rtol, atol)
    except Exception as exc:  # an unsupported model, a converter bug, a mismatch
        (directory / PLAN_FILE).unlink(missing_ok=True)
        _log.info("no ONNX serving plan for this model: %s", exc)
        return None
    total = len(next(iter(rows.values())))
    entry.update(tolerance={"rtol": rtol, "atol": atol}, verified_rows=total, converter=converter)
    return entry


def _verification_set(
    sample: Arrays, predict: Callable[[Arrays], Arrays]
) -> tuple[Arrays, list[Arrays], bool]:
    """The rows a plan must reproduce, the non-finite probes, and whether the model refuses them.

    The plan must answer NaN and infinity as the model does (the probes then
    join the rows), or refuse them where the model refuses them.
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


def _verify(
    plan: Plan,
    rows: Arrays,
    refused: list[Arrays],
    predict: Callable[[Arrays], Arrays],
    rtol: float,
    atol: float,
) -> None:
    """RefusedError unless the plan reproduces ``predict`` on the rows and refuses ``refused``.

    The rows are checked as one batch and the first of them one by one.
    """
    total = len(next(iter(rows.values())))
    singles = ({k: v[i : i + 1] for k, v in rows.items()} for i in range(min(total, _SINGLE_ROWS)))
    for batch in [rows, *singles]:
        reason = mismatch(predict(batch), plan.run(batch), rtol=rtol, atol=atol)
        if reason is not None:
            raise RefusedError(f"on {len(next(iter(batch.values())))} row(s): {reason}")
    if any(_answers(plan.run, probe) for probe in refused):
        raise RefusedError("the plan answers non-finite input that the model refuses")


def _add_guard(model: Any) -> None:
    """Add the :data:`_GUARD` output: the sum of each input * 0, 0 unless a value is not finite.

    Computed in the graph because a numpy check beside ``session.run`` costs
    more than the graph's own work on small batches.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    weights = {t.name for t in graph.initializer}
    sums = []
    for value in graph.input:
        elem = value.type.tensor_type.elem_type
        dtype = helper.tensor_dtype_to_np_dtype(elem)
        if value.name in weights or dtype.kind != "f":
            continue
        zero, masked, summed = (f"{_GUARD}_{value.name}_{part}" for part in ("zero", "mul", "sum"))
        graph.initializer.append(numpy_helper.from_array(np.zeros((), dtype=dtype), zero))
        graph.node.append(helper.make_node("Mul", [value.name, zero], [masked]))
        graph.node.append(helper.make_node("ReduceSum", [masked], [summed], keepdims=0))
        sums.append(summed)
        if elem != TensorProto.DOUBLE:
            graph.node.append(
                helper.make_node("Cast", [summed], [f"{summed}_d"], to=TensorProto.DOUBLE)
            )
            sums[-1] = f"{summed}_d"
    graph.node.append(helper.make_node("Sum", sums, [_GUARD]))
    graph.output.append(helper.make_tensor_value_info(_GUARD, TensorProto.DOUBLE, []))


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
