"""The Runtime contract: the one interface every framework implements.

A runtime saves a trained object into a directory, loads it back, and predicts
on a batch of named numpy arrays. Runtime code is plain synchronous Python; the
serving engine decides threads or processes. Framework imports happen inside
methods (through :func:`require`) so importing a runtime module is cheap and a
missing framework names the extra to install.
"""

from __future__ import annotations

import importlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from aimass.errors import AimassError, ErrorCode
from aimass.registry.manifest import ArtifactFile, Lineage, Manifest
from aimass.registry.signature import Signature, Task, as_array

_T = TypeVar("_T")

__all__ = [
    "Arrays",
    "Capability",
    "LoadOptions",
    "Runtime",
    "Saved",
    "class_path",
    "import_class",
    "require",
]

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

    def to_manifest(
        self,
        runtime: str,
        *,
        files: tuple[ArtifactFile, ...] = (),
        task: Task | None = None,
        signature: Signature | None = None,
        lineage: Lineage | None = None,
    ) -> Manifest:
        """The manifest of what was saved; ``task`` and ``signature`` override the inferred."""
        return Manifest(
            runtime=runtime,
            framework=self.framework,
            framework_version=self.framework_version,
            format=self.format,
            unsafe=self.unsafe,
            task=task or self.task,
            signature=signature or self.signature,
            files=files,
            lineage=lineage or Lineage(),
            options=self.options,
        )


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


def import_class(path: str, base: type[Any], *, hint: str = "") -> type[Any]:
    """Import the class a manifest names as ``module:qualname``, a subclass of ``base``.

    The manifest is data, so the name is checked to be a class of the kind the
    runtime expects rather than any callable.
    """
    module_name, _, qualname = path.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise AimassError(
            ErrorCode.UNSUPPORTED,
            f"the class {path} cannot be imported here ({exc})" + (f": {hint}" if hint else ""),
        ) from exc
    if not (isinstance(found, type) and issubclass(found, base)):
        raise AimassError(
            ErrorCode.UNSUPPORTED, f"{path} is not a {base.__module__}.{base.__qualname__} class"
        )
    return found


def class_path(cls: type, *, hint: str) -> str:
    """``module:qualname`` of a class that a serving process can import back.

    Classes from ``__main__`` or defined inside a function cannot be; the
    error ends with ``hint``, which says what to do instead.
    """
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        where = "in __main__" if cls.__module__ == "__main__" else "inside a function"
        raise AimassError(
            ErrorCode.UNSUPPORTED,
            f"class {cls.__qualname__} is defined {where}, so it cannot be imported where "
            f"the model is served: {hint}",
        )
    path = f"{cls.__module__}:{cls.__qualname__}"
    if import_class(path, object) is not cls:
        raise AimassError(
            ErrorCode.UNSUPPORTED, f"importing {path} does not give back the class being saved"
        )
    return path


def refuse_pickle(options: LoadOptions, what: str) -> None:
    """Raise UNSAFE_FORMAT if the settings forbid loading pickled artifacts."""
    if not options.allow_pickle:
        raise AimassError(
            ErrorCode.UNSAFE_FORMAT,
            f"{what} is a pickle artifact, which runs code when loaded, and "
            "AIMASS_REGISTRY__ALLOW_PICKLE is false",
        )


class Lazy(Generic[_T]):
    """A value made on first use, once, even when threads ask for it together."""

    def __init__(self, make: Callable[[], _T], value: _T | None = None) -> None:
        self._make = make
        self._value = value
        self._lock = threading.Lock()

    def get(self) -> _T:
        """The value, made now if this is the first use."""
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._make()
                value = self._value
        return value


def artifact_path(directory: Path, name: str, manifest: Manifest, *, recheck: bool) -> Path:
    """``directory / name``; with ``recheck``, INTEGRITY unless its sha256 is the manifest's.

    ``recheck`` is for an artifact a runtime reads after its version loaded
    (lazily, behind a serving plan): the registry verified every file when it
    loaded the version, and this shows the file has not changed since. A file
    the manifest does not list (a runtime loaded outside the registry) is not
    checked.
    """
    path = directory / name
    if not recheck:
        return path
    from aimass.registry.artifacts import sha256_of

    for file in manifest.files:
        if file.path == name and sha256_of(path) != file.sha256:
            raise AimassError(
                ErrorCode.INTEGRITY,
                f"{name} changed after its version was loaded: "
                "its sha256 no longer matches the manifest",
            )
    return path


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
