"""The runtime table: framework runtimes found by name, imported only when used.

Adding a framework means adding one module with a
:class:`~aimass.contract.runtime.Runtime` subclass and one line in
:data:`RUNTIMES`. The table holds import paths, not classes, so importing it
imports no framework.
"""

from __future__ import annotations

import importlib
from typing import Any

from aimass.contract.runtime import Runtime
from aimass.errors import AimassError, ErrorCode

__all__ = ["RUNTIMES", "detect_runtime", "runtime_class"]

# Detection tries these in order: specific wrappers (xgboost's and lightgbm's
# scikit-learn estimators) before the generic scikit-learn runtime.
RUNTIMES: dict[str, str] = {
    "python": "aimass.runtimes.custom:PythonRuntime",
    "xgboost": "aimass.runtimes.xgboost:XGBoostRuntime",
    "lightgbm": "aimass.runtimes.lightgbm:LightGBMRuntime",
    "sklearn": "aimass.runtimes.sklearn:SklearnRuntime",
    "torch": "aimass.runtimes.torch:TorchRuntime",
    "onnx": "aimass.runtimes.onnx:OnnxRuntime",
    "transformers": "aimass.runtimes.transformers:TransformersRuntime",
}


def runtime_class(name: str) -> type[Runtime]:
    """The runtime class registered under ``name``."""
    try:
        path = RUNTIMES[name]
    except KeyError:
        raise AimassError(
            ErrorCode.UNSUPPORTED, f"unknown runtime '{name}'; known: {sorted(RUNTIMES)}"
        ) from None
    module, _, attr = path.partition(":")
    cls: type[Runtime] = getattr(importlib.import_module(module), attr)
    return cls


def detect_runtime(obj: Any) -> type[Runtime]:
    """The first runtime that handles ``obj``; UNSUPPORTED if none does."""
    for name in RUNTIMES:
        cls = runtime_class(name)
        if cls.handles(obj):
            return cls
    raise AimassError(
        ErrorCode.UNSUPPORTED,
        f"no runtime handles a {type(obj).__module__}.{type(obj).__qualname__}; "
        "wrap it in an aimass.PythonModel or pass runtime=...",
    )
