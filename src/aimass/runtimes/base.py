"""The Runtime contract: the one interface every framework implements.

A runtime saves a trained object into a directory, loads it back, and predicts
on a batch of named numpy arrays. Runtime code is plain synchronous Python; the
serving engine decides threads or processes. Framework imports happen inside
methods (through :func:`require`) so importing a runtime module is cheap and a
missing framework names the extra to install.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from aimass.errors import AimassError, ErrorCode
from aimass.registry.manifest import Manifest
from aimass.registry.signature import Signature, Task, as_array

__all__ = ["Arrays", "Capability", "LoadOptions", "Runtime", "Saved", "require"]

Arrays = dict[str, np.ndarray[Any, Any]]


class Capability(StrEnum):
    """What a loaded model can do beyond ``predict``."""

    PREDICT = "predict"
    PREDICT_PROBA = "predict_proba"
    EMBED = "embed"
    GENERATE = "generate"
    STREAM = "stream"
    LEARN = "learn"


@dataclass(frozen=True)
class Saved:
    """What :meth:`Runtime.save` wrote, for the manifest."""

    framework: str
    framework_version: str
    format: str
    signature: Signature
    task: Task = Task.CUSTOM
    unsafe: bool = False
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadOptions:
    """Policy the loader applies; set from :class:`aimass.settings.RegistrySettings`."""

    allow_pickle: bool = True


def require(module: str, extra: str) -> ModuleType:
    """Import a framework module, or raise MISSING_EXTRA naming the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise AimassError(
            ErrorCode.MISSING_EXTRA,
            f"this model needs '{module}', which is not installed: pip install 'aimass[{extra}]'",
            extra=extra,
        ) from exc


def refuse_pickle(options: LoadOptions, what: str) -> None:
    """Raise UNSAFE_FORMAT if the settings forbid loading pickled artifacts."""
    if not options.allow_pickle:
        raise AimassError(
            ErrorCode.UNSAFE_FORMAT,
            f"{what} is a pickle artifact, which runs code when loaded, and "
            "AIMASS_REGISTRY__ALLOW_PICKLE is false",
        )


class Runtime(ABC):
    """A loaded model of one framework, plus the class-level save and load steps.

    Subclasses set :attr:`name` (the key in the runtime table, recorded in the
    manifest), :attr:`extra` (the pip extra that installs the framework) and
    :attr:`capabilities`.
    """

    name: ClassVar[str]
    extra: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.PREDICT})

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest

    @classmethod
    @abstractmethod
    def handles(cls, obj: Any) -> bool:
        """Whether ``obj`` is something this runtime saves; must not import the framework."""

    @classmethod
    @abstractmethod
    def save(cls, obj: Any, directory: Path, *, sample_input: Any = None, **options: Any) -> Saved:
        """Write ``obj`` into the empty ``directory`` and describe what was written.

        ``sample_input`` (what the object's own predict takes) is run through
        the object to infer the signature when the runtime cannot read it from
        the object itself.
        """

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, manifest: Manifest, options: LoadOptions) -> Runtime:
        """Load a version whose files are in ``directory`` (already verified)."""

    @abstractmethod
    def predict(self, inputs: Arrays) -> Arrays:
        """Predict on a batch: named arrays in, named arrays out, batch dimension first."""

    def to_inputs(self, value: Any) -> Arrays:
        """Turn what the original object's predict took into named arrays.

        The default maps a mapping by name and anything else to the single
        declared input; runtimes with richer inputs (data frames) override it.
        """
        inputs = self.manifest.signature.inputs
        if isinstance(value, Mapping):
            return {str(k): as_array(v) for k, v in value.items()}
        if len(inputs) != 1:
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"this model takes {len(inputs)} inputs {[s.name for s in inputs]}: "
                "pass a mapping of name to value",
            )
        return {inputs[0].name: as_array(value)}
