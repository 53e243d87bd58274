"""Models written in plain Python: subclass :class:`PythonModel`.

A user writes a class with ``predict(inputs) -> outputs`` on named numpy
arrays, optionally ``load(artifacts)`` to read files it ships, and declares
``artifacts`` (name -> local file or directory copied into the version) and
``code_paths`` (modules or packages copied into the version and put on
``sys.path`` at load, so the class imports in a fresh process). Save options
``artifacts`` and ``code_paths`` override the class's; ``signature`` replaces
the one inferred from ``sample_input`` (for variable dimensions)::

    class Doubler(PythonModel):
        code_paths = [__file__]

        def predict(self, inputs):
            return {"output": inputs["input"] * 2}

The version records the class as ``module:qualname`` (in the manifest and in
``python_model.json``, so a model with no files of its own still has one); the
instance itself is never pickled, so the files are inert data, unless an
artifact is a pickle: the version is then ``unsafe``, and with pickles off the
artifact is refused before the model's ``load`` could read it. Loading, however, imports the
recorded module and runs the user's code: that is why the manifest names the
class and why only versions from trusted authors should be loaded. At load the
class is constructed with no arguments and ``load`` is called with the
directory holding the artifacts, so all state must come from there.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from typing_extensions import override

from aimass.contract.manifest import Manifest
from aimass.contract.runtime import Arrays, LoadOptions, Runtime, Saved, SaveOptions
from aimass.contract.signature import Signature, as_array
from aimass.errors import AimassError, ErrorCode
from aimass.runtimes.loading import class_path, import_class, refuse_pickle
from aimass.runtimes.pickles import pickled_files

__all__ = ["PythonModel", "PythonOptions", "PythonRuntime"]

_ARTIFACTS = "artifacts"
_CODE = "code"
_CLASS_FILE = "python_model.json"
_CODE_PATHS_HINT = "define it at the top level of a module file and list that file in code_paths"


class PythonModel(ABC):
    """Base class for a model written in Python; see the module docstring."""

    # Immutable defaults: subclasses (or instances) assign their own dict or list.
    artifacts: Mapping[str, str] = MappingProxyType({})
    """Files or directories to ship with the version: name -> local path."""

    code_paths: Sequence[str] = ()
    """Modules (``.py`` files) or package directories the class needs to import."""

    def load(self, artifacts: Path) -> None:
        """Read state from ``artifacts`` (a directory holding one entry per artifact name)."""
        # Optional hook: a model without files has nothing to read.
        return None

    @abstractmethod
    def predict(self, inputs: Arrays) -> Arrays:
        """Predict on a batch of named arrays; every output has one row per input row."""


class PythonOptions(SaveOptions):
    """What a Python model ships with, overriding its class's declarations."""

    artifacts: dict[str, str] | None = None
    """Files or directories to ship: name -> local path (default: the class's)."""
    code_paths: list[str] | None = None
    """Modules or package directories the class needs (default: the class's)."""
    signature: Signature | None = None
    """The signature, instead of the one inferred from ``sample_input`` (variable dimensions)."""
    allow_pickle: bool = True
    """Whether an artifact may be a pickle (default: ``AIMASS_REGISTRY__ALLOW_PICKLE``)."""


class PythonRuntime(Runtime):
    """A :class:`PythonModel` subclass, imported by name at load."""

    name = "python"
    extra = "python"
    Options = PythonOptions

    def __init__(self, manifest: Manifest, model: PythonModel) -> None:
        super().__init__(manifest)
        self.model = model

    @override
    @classmethod
    def handles(cls, obj: Any) -> bool:
        return isinstance(obj, PythonModel) or (
            isinstance(obj, type) and issubclass(obj, PythonModel)
        )

    @override
    @classmethod
    def write(
        cls, obj: Any, directory: Path, *, sample_input: Any, options: PythonOptions
    ) -> Saved:
        model_cls: type[PythonModel] = obj if isinstance(obj, type) else type(obj)
        path = class_path(model_cls, hint=_CODE_PATHS_HINT)
        artifacts = dict(obj.artifacts if options.artifacts is None else options.artifacts)
        code_paths = list(obj.code_paths if options.code_paths is None else options.code_paths)
        _copy_artifacts(artifacts, directory / _ARTIFACTS)
        pickles = pickled_files(directory / _ARTIFACTS)
        if pickles:
            refuse_pickle(options.allow_pickle, f"artifact {pickles[0]}")
        (directory / _CLASS_FILE).write_text(json.dumps({"class": path}) + "\n")
        code_names = _copy_code(code_paths, directory / _CODE)
        given = options.signature
        if sample_input is None and given is None:
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                "pass sample_input= (a few rows of named arrays) or signature= "
                "so the signature can be recorded",
            )
        # Build an instance exactly as load does, so a class that cannot be
        # rebuilt from its artifacts fails now rather than in production.
        model = _instantiate(model_cls, directory / _ARTIFACTS)
        signature = _signature(model, sample_input, given)
        return Saved(
            framework="python",
            framework_version=platform.python_version(),
            format="python-class",
            signature=signature,
            options={"class": path, "code_paths": code_names, "artifacts": sorted(artifacts)},
        )

    @override
    @classmethod
    def load(cls, directory: Path, manifest: Manifest, options: LoadOptions) -> PythonRuntime:
        if manifest.options.get("code_paths"):
            code = str(directory / _CODE)
            if code not in sys.path:
                sys.path.insert(0, code)
        model_cls: type[PythonModel] = import_class(
            manifest.options["class"], PythonModel, hint=_CODE_PATHS_HINT
        )
        return cls(manifest, _instantiate(model_cls, directory / _ARTIFACTS))

    @override
    def predict(self, inputs: Arrays) -> Arrays:
        return _outputs(self.model, inputs)


def _instantiate(model_cls: type[PythonModel], artifacts: Path) -> PythonModel:
    try:
        model = model_cls()
    except TypeError as exc:
        raise AimassError(
            ErrorCode.UNSUPPORTED,
            f"{model_cls.__qualname__} must be constructible with no arguments; "
            f"read state from artifacts in load() instead ({exc})",
        ) from exc
    model.load(artifacts)
    return model


def _copy_artifacts(artifacts: Mapping[str, str], target: Path) -> None:
    target.mkdir()
    for name, source in artifacts.items():
        if not name or Path(name).name != name or name in (".", ".."):
            raise AimassError(
                ErrorCode.INVALID_INPUT, f"artifact name {name!r} must be a plain file name"
            )
        _copy(Path(source), target / name, "artifact")


def _copy_code(code_paths: Sequence[str], target: Path) -> list[str]:
    names: list[str] = []
    for entry in code_paths:
        source = Path(entry)
        if source.name in names:
            raise AimassError(
                ErrorCode.INVALID_INPUT, f"two code_paths entries are named {source.name!r}"
            )
        target.mkdir(exist_ok=True)
        _copy(source, target / source.name, "code path")
        names.append(source.name)
    return names


def _copy(source: Path, dest: Path, what: str) -> None:
    if source.is_dir():
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    elif source.is_file():
        shutil.copy2(source, dest)
    else:
        raise AimassError(ErrorCode.INVALID_INPUT, f"{what} {str(source)!r} does not exist")


def _signature(model: PythonModel, sample_input: Any, given: Signature | None) -> Signature:
    if sample_input is None:
        assert given is not None  # save checked that one of them is there
        return given
    inputs = _named(sample_input)
    outputs = _outputs(model, inputs)
    if given is None:
        return Signature.from_samples(inputs, outputs)
    given.validate_inputs(given.conform(inputs))
    return given


def _named(sample: Any) -> Arrays:
    if isinstance(sample, Mapping):
        return {str(k): as_array(v) for k, v in sample.items()}
    return {"input": as_array(sample)}


def _outputs(model: PythonModel, inputs: Arrays) -> Arrays:
    outputs = model.predict(inputs)
    if not isinstance(outputs, Mapping):
        raise AimassError(
            ErrorCode.INTERNAL,
            f"{type(model).__qualname__}.predict returned a {type(outputs).__name__}, "
            "not a dict of named arrays",
        )
    return {str(k): as_array(v) for k, v in outputs.items()}
