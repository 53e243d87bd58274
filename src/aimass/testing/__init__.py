"""Public helpers for testing models and runtimes built on aimass.

Names are imported on first use so ``python -m aimass.testing.checks`` (the
conformance suite's fresh-process entry point) does not import its own module
twice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aimass.testing.checks import check_runtime

__all__ = ["check_runtime"]

_LAZY = {"check_runtime": "aimass.testing.checks"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aimass.testing' has no attribute {name!r}")
