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

This module does what every plan shares (the file, the session, running it,
and the guard); the checks are :mod:`aimass.convert.verify`'s and converting
is the framework's (:mod:`aimass.convert.sklearn`, :mod:`aimass.convert.torch`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aimass.contract.manifest import Manifest
from aimass.contract.runtime import Arrays
from aimass.contract.signature import Signature
from aimass.convert.verify import RefusedError, check_reproduces, verification_set
from aimass.errors import AimassError, ErrorCode

__all__ = ["PLAN_FILE", "Plan", "make_plan", "open_plan", "open_session"]

_log = logging.getLogger(__name__)

PLAN_FILE = "serving.onnx"

# An output the plan adds to the graph when it must refuse non-finite input.
_GUARD = "aimass_nonfinite"
_ORT_DTYPES: dict[str, np.dtype[Any]] = {
    "tensor(double)": np.dtype(np.float64),
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(bool)": np.dtype(np.bool_),
}


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

        rows, probes, finite_only = verification_set(sample, predict)
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
        check_reproduces(
            Plan(session, entry, signature).run, rows, refused, predict, rtol=rtol, atol=atol
        )
    except Exception as exc:  # an unsupported model, a converter bug, a mismatch
        (directory / PLAN_FILE).unlink(missing_ok=True)
        _log.info("no ONNX serving plan for this model: %s", exc)
        return None
    total = len(next(iter(rows.values())))
    entry.update(tolerance={"rtol": rtol, "atol": atol}, verified_rows=total, converter=converter)
    return entry


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


def open_session(ort: Any, path: Path, threads: int) -> Any:
    """An onnxruntime CPU session on ``path`` with ``threads`` intra-op threads and one inter-op."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
