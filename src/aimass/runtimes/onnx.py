"""ONNX models, run with onnxruntime on the CPU.

Takes an ``onnx.ModelProto`` or the path of a ``.onnx`` file (what the CLI
registers). ONNX is a graph of operators and weights, so loading runs no user
code. The signature is read from the graph: its input and output names, their
element types and shapes, with symbolic or unknown dimensions as ``-1``.

Only tensor outputs are served. Converters that add non-tensor outputs (such
as skl2onnx's ZipMap, a sequence of maps) are refused with a hint to convert
without them. A graph exported with a fixed batch of one is run row by row.

Sessions use one intra-op thread unless the ``intra_op_threads`` save option
says otherwise, because the engine already runs models side by side.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
from typing_extensions import override

from aimass.contract.manifest import Manifest
from aimass.contract.runtime import Arrays, ForkPolicy, LoadOptions, Runtime, Saved, SaveOptions
from aimass.contract.signature import Datatype, Signature, TensorSpec, as_array
from aimass.convert.plan import open_session
from aimass.errors import AimassError, ErrorCode
from aimass.runtimes.loading import require

__all__ = ["OnnxOptions", "OnnxRuntime"]

_FILE = "model.onnx"
_DATA = "model.onnx.data"
# Past this many bytes of weights the protobuf nears its 2 GiB limit, so the
# weights go to a side file.
_EXTERNAL_THRESHOLD = 1 << 30


class OnnxOptions(SaveOptions):
    """How an ONNX version runs."""

    intra_op_threads: int = Field(default=1, ge=1, description="onnxruntime's intra-op threads")


class OnnxRuntime(Runtime):
    """An ONNX graph in an onnxruntime InferenceSession."""

    name = "onnx"
    extra = "onnx"
    Options = OnnxOptions

    def __init__(self, manifest: Manifest, session: Any) -> None:
        super().__init__(manifest)
        self.session = session
        self._outputs = [s.name for s in manifest.signature.outputs]
        self._row_by_row = bool(manifest.options.get("batch_of_one", False))

    @override
    @classmethod
    def handles(cls, obj: Any) -> bool:
        if isinstance(obj, os.PathLike):
            return Path(obj).suffix == ".onnx"
        return type(obj).__name__ == "ModelProto" and type(obj).__module__.startswith("onnx")

    @override
    @classmethod
    def write(cls, obj: Any, directory: Path, *, sample_input: Any, options: OnnxOptions) -> Saved:
        onnx = require("onnx", cls.extra)
        ort = require("onnxruntime", cls.extra)
        model = _read(onnx, obj) if isinstance(obj, os.PathLike) else obj
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            raise AimassError(ErrorCode.INVALID_INPUT, f"not a valid ONNX model: {exc}") from exc
        signature, batch_of_one = _signature(onnx, model)
        weights = sum(len(t.raw_data) for t in model.graph.initializer)
        if weights > _EXTERNAL_THRESHOLD:
            onnx.save_model(
                model,
                str(directory / _FILE),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=_DATA,
            )
        else:
            onnx.save_model(model, str(directory / _FILE))
        threads = options.intra_op_threads
        saved_options: dict[str, Any] = {"intra_op_threads": threads, "batch_of_one": batch_of_one}
        try:
            session = open_session(ort, directory / _FILE, threads)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise AimassError(
                ErrorCode.UNSUPPORTED, f"onnxruntime {ort.__version__} cannot run this model: {exc}"
            ) from exc
        if sample_input is not None:
            # Fill in what the graph leaves unsaid (outputs of unknown rank)
            # from a real run, and fail now if the sample does not fit.
            runtime = cls(_draft(signature, saved_options), session)
            named = signature.conform(runtime.to_inputs(sample_input))
            outputs = runtime.predict(signature.validate_inputs(named))
            signature = _complete(signature, outputs)
        return Saved(
            framework="onnx",
            framework_version=f"opset {_opset(model)}; onnxruntime {ort.__version__}",
            format="onnx",
            signature=signature,
            options=saved_options,
        )

    @override
    @classmethod
    def load(cls, directory: Path, manifest: Manifest, options: LoadOptions) -> OnnxRuntime:
        ort = require("onnxruntime", cls.extra)
        threads = int(manifest.options.get("intra_op_threads", 1))
        return cls(manifest, open_session(ort, directory / _FILE, threads))

    @override
    @classmethod
    def fork_policy(cls, manifest: Manifest, loaded: Runtime | None = None) -> ForkPolicy:
        if int(manifest.options.get("intra_op_threads", 1)) > 1:
            return ForkPolicy(
                shared=False,
                reason="its onnxruntime session starts a thread pool, "
                "which does not survive a fork",
            )
        return ForkPolicy()

    @override
    def predict(self, inputs: Arrays) -> Arrays:
        if not self._row_by_row:
            return self._run(inputs)
        rows = len(next(iter(inputs.values())))
        parts = [self._run({k: v[i : i + 1] for k, v in inputs.items()}) for i in range(rows)]
        return {name: np.concatenate([p[name] for p in parts]) for name in self._outputs}

    def _run(self, feeds: Arrays) -> Arrays:
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

        try:
            values = self.session.run(self._outputs, feeds)
        except InvalidArgument as exc:
            # The signature admitted the request but the graph did not (a
            # dynamic dimension it constrains internally): the client's fault.
            raise AimassError(
                ErrorCode.INVALID_INPUT, f"the model refused the input: {exc}"
            ) from exc
        return {name: as_array(v) for name, v in zip(self._outputs, values, strict=True)}


def _opset(model: Any) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _signature(onnx: Any, model: Any) -> tuple[Signature, bool]:
    graph = model.graph
    weights = {t.name for t in graph.initializer}
    # Old exporters list weights among the inputs; they are not fed by callers.
    inputs = [v for v in graph.input if v.name not in weights]
    if not inputs:
        raise AimassError(ErrorCode.UNSUPPORTED, "this ONNX graph takes no inputs")
    non_tensor = [v.name for v in graph.output if not v.type.HasField("tensor_type")]
    if non_tensor:
        raise AimassError(
            ErrorCode.UNSUPPORTED,
            f"ONNX outputs {non_tensor} are not tensors (a ZipMap of class probabilities?); "
            "convert without them, e.g. skl2onnx's options={'zipmap': False}",
        )
    input_specs = [_spec(onnx, v) for v in inputs]
    first_dims = {_first_dim(v) for v in inputs}
    if any(d not in (-1, 1) for d in first_dims):
        raise AimassError(
            ErrorCode.UNSUPPORTED,
            "this ONNX graph has a fixed batch size; export it with a dynamic first axis",
        )
    signature = Signature(
        inputs=tuple(input_specs), outputs=tuple(_spec(onnx, v) for v in graph.output)
    )
    return signature, first_dims == {1}


def _first_dim(value: Any) -> int:
    tensor = value.type.tensor_type
    if not tensor.HasField("shape") or not tensor.shape.dim:
        raise AimassError(
            ErrorCode.UNSUPPORTED,
            f"ONNX input {value.name!r} has no batch dimension; aimass batches requests",
        )
    dim = tensor.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else -1


def _spec(onnx: Any, value: Any) -> TensorSpec:
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        # Unknown rank; filled in from a sample run when there is one.
        return TensorSpec(name=value.name, datatype=_datatype(onnx, value), shape=())
    dims = [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor.shape.dim
    ]
    if dims:
        dims[0] = -1
    return TensorSpec(name=value.name, datatype=_datatype(onnx, value), shape=tuple(dims))


def _datatype(onnx: Any, value: Any) -> Datatype:
    elem = value.type.tensor_type.elem_type
    if elem == onnx.TensorProto.STRING:
        return Datatype.BYTES
    try:
        return Datatype.from_numpy(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)))
    except (KeyError, TypeError, AimassError):
        raise AimassError(
            ErrorCode.UNSUPPORTED,
            f"ONNX tensor {value.name!r} has element type "
            f"{onnx.TensorProto.DataType.Name(elem)}, which has no OIP datatype",
        ) from None


def _draft(signature: Signature, options: dict[str, Any]) -> Manifest:
    return Manifest(
        runtime=OnnxRuntime.name,
        framework="onnx",
        framework_version="",
        format="onnx",
        signature=signature,
        options=options,
    )


def _complete(signature: Signature, outputs: Arrays) -> Signature:
    specs = []
    for spec in signature.outputs:
        value = outputs[spec.name]
        if not spec.shape and value.ndim:
            spec = spec.model_copy(update={"shape": (-1, *value.shape[1:])})
        specs.append(spec)
    return Signature(inputs=signature.inputs, outputs=tuple(specs))


def _read(onnx: Any, path: os.PathLike[str]) -> Any:
    """The model in the file at ``path``; INVALID_INPUT if it is not an ONNX protobuf."""
    try:
        return onnx.load(os.fspath(path))
    except Exception as exc:  # protobuf's DecodeError, or whatever a truncated file raises
        raise AimassError(
            ErrorCode.INVALID_INPUT, f"{os.fspath(path)} is not an ONNX model ({exc})"
        ) from exc
