"""Public helpers for testing models and runtimes built on aimass.

Names are imported on first use so ``python -m aimass.testing.checks`` (the
conformance suite's fresh-process entry point) does not import its own module
twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aimass.lazy import lazy_exports

if TYPE_CHECKING:
    from aimass.testing.checks import check_runtime

__all__ = ["check_runtime"]

__getattr__ = lazy_exports(__name__, {"check_runtime": "aimass.testing.checks"})
