"""Framework runtimes behind one contract (:mod:`aimass.contract.runtime`), one module each."""

from aimass.runtimes.table import RUNTIMES, detect_runtime, runtime_class

__all__ = ["RUNTIMES", "detect_runtime", "runtime_class"]
