"""A PyTorch module's ONNX serving plan (see :mod:`aimass.convert.plan`): ``torch.onnx`` export.

Exported by the TorchScript-based exporter, which takes a fraction of a second
where the dynamo one takes seconds, with a dynamic batch dimension on every
input and output. Only modules whose inputs are all float tensors get a plan:
for token ids and the like the verification rows would be meaningless.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from aimass.contract.runtime import Arrays
from aimass.contract.signature import Signature
from aimass.convert.plan import make_plan

__all__ = ["make_torch_plan"]


def make_torch_plan(
    module: Any,
    inputs: Arrays,
    directory: Path,
    signature: Signature,
    predict: Callable[[Arrays], Arrays],
    *,
    single: bool,
    rtol: float,
    atol: float,
) -> dict[str, Any] | None:
    """The plan's manifest entry, or None when the module gets none.

    ``predict`` gives the module's named outputs on named arrays; ``single``
    says the module takes its one input positionally (else by keyword).
    """
    if any(value.dtype.kind != "f" for value in inputs.values()):
        return None
    try:
        import onnx
    except ImportError:  # the onnx extra is not installed: served by torch
        return None
    import torch

    names = list(inputs)
    outputs = [spec.name for spec in signature.outputs]

    def convert(rows: Arrays) -> Any:
        tensors = {
            name: torch.from_numpy(np.ascontiguousarray(value[:2])) for name, value in rows.items()
        }
        args = (next(iter(tensors.values())),) if single else ()
        buffer = io.BytesIO()
        # The TorchScript-based exporter is deprecated but seconds faster; its
        # warnings say so on every call.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                buffer,  # type: ignore[arg-type]  # the TorchScript exporter takes files
                kwargs=None if single else tensors,
                input_names=names,
                output_names=outputs,
                dynamic_axes={name: {0: "batch"} for name in names + outputs},
                dynamo=False,
            )
        return onnx.load_model_from_string(buffer.getvalue())

    return make_plan(
        convert,
        inputs,
        directory,
        signature,
        predict,
        rtol=rtol,
        atol=atol,
        converter=f"torch.onnx {torch.__version__}",
    )
