"""A scikit-learn model's ONNX serving plan (see :mod:`aimass.runtimes.plan`): skl2onnx conversion.

The estimator is converted with float64 input and classifiers without ZipMap,
and must reproduce scikit-learn to about a millionth of a part per million.
See :mod:`aimass.runtimes.sklearn` for when plans are made and how to turn
them off.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from aimass.contract.runtime import Arrays
from aimass.contract.signature import Signature
from aimass.convert.plan import make_plan

__all__ = ["ATOL", "RTOL", "make_sklearn_plan"]

# Floats must agree to about a millionth of a part per million: what separates
# two float64 evaluations of the same formula, not a float32 approximation.
RTOL = 1e-9
ATOL = 1e-12

_INPUT = "input"
_GRAPH = "aimass_serving_plan"


def make_sklearn_plan(
    obj: Any,
    sample: Any,
    directory: Path,
    signature: Signature,
    predict: Callable[[Any], Arrays],
) -> dict[str, Any] | None:
    """The plan's manifest entry for a model fitted on a matrix, or None when it gets none.

    ``predict`` gives the estimator's named outputs on a matrix.
    """
    try:
        import skl2onnx
    except ImportError:  # the onnx extra is not installed: served by scikit-learn
        return None

    def convert(rows: Arrays) -> Any:
        from skl2onnx.common.data_types import DoubleTensorType

        width = rows[_INPUT].shape[1]
        options = {id(obj): {"zipmap": False}} if hasattr(obj, "predict_proba") else None
        # A fixed graph name: skl2onnx's default is a fresh uuid, which would make
        # every save of the same model a different artifact.
        return skl2onnx.convert_sklearn(
            obj,
            name=_GRAPH,
            initial_types=[(_INPUT, DoubleTensorType([None, width]))],
            options=options,
        )

    return make_plan(
        convert,
        {_INPUT: np.asarray(sample)},
        directory,
        signature,
        lambda inputs: predict(inputs[_INPUT]),
        rtol=RTOL,
        atol=ATOL,
        converter=f"skl2onnx {skl2onnx.__version__}",
    )
