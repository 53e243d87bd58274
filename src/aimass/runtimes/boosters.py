"""What the two gradient-boosting runtimes (XGBoost, LightGBM) share.

Both take a scikit-learn wrapper or a raw Booster (or the path of a model
file), save in the framework's own tree format (no code runs on load), take
one numeric matrix ``input`` in which NaN means missing, and answer like the
scikit-learn runtime: ``label`` and ``probabilities`` for a classifier,
``prediction`` otherwise. The framework-specific parts (the file format, the
wrapper classes) stay in each runtime's module.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from typing_extensions import override

from aimass.contract.manifest import Manifest
from aimass.contract.runtime import Arrays, Runtime, Saved
from aimass.contract.signature import Signature, Task, as_array
from aimass.errors import AimassError, ErrorCode

__all__ = ["BoosterRuntime"]


class BoosterRuntime(Runtime):
    """A gradient-boosting model of one framework, held as ``model``.

    Subclasses name the framework's top-level module (:attr:`framework`), the
    dtype a sample is converted to unless it is already :attr:`kept_dtype`,
    and how to recognise the framework's model files.
    """

    framework: ClassVar[str]
    sample_dtype: ClassVar[type[np.floating[Any]]]
    kept_dtype: ClassVar[type[np.floating[Any]]]

    def __init__(self, manifest: Manifest, model: Any) -> None:
        super().__init__(manifest)
        self.model = model

    @override
    @classmethod
    def handles(cls, obj: Any) -> bool:
        if isinstance(obj, os.PathLike):
            return cls.is_model_file(Path(obj))
        return any(c.__module__.split(".")[0] == cls.framework for c in type(obj).__mro__)

    @classmethod
    @abstractmethod
    def is_model_file(cls, path: Path) -> bool:
        """Whether ``path`` is a model file of this framework, read from its first bytes."""

    @classmethod
    def sample_matrix(cls, sample_input: Any, n_features: int) -> np.ndarray[Any, Any]:
        """The matrix the signature is inferred from: the sample, or one row of zeros."""
        if sample_input is None:
            return np.zeros((1, n_features), dtype=cls.sample_dtype)
        sample = as_array(sample_input)
        if sample.ndim != 2 or sample.shape[1] != n_features or sample.dtype.kind not in "fiub":
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"sample_input must be a numeric matrix with {n_features} columns, "
                f"got {sample.dtype} of shape {list(sample.shape)}",
            )
        return sample if sample.dtype == cls.kept_dtype else sample.astype(cls.sample_dtype)

    @classmethod
    def described(
        cls,
        sample: np.ndarray[Any, Any],
        outputs: Arrays,
        *,
        version: str,
        fmt: str,
        task: Task,
        options: dict[str, Any],
    ) -> Saved:
        """What was saved, with the signature of the one ``input`` and the reloaded outputs."""
        return Saved(
            framework=cls.framework,
            framework_version=version,
            format=fmt,
            signature=Signature.from_samples({"input": sample}, outputs),
            task=task,
            options=options,
        )
