"""What runtimes share when they load: frameworks, classes, pickles and artifact files.

Framework imports go through :func:`require`, so a missing framework names the
pip extra that brings it; classes a manifest names are imported through
:func:`import_class`, which checks they are of the expected kind; and
:func:`refuse_pickle` is the one place the pickle switch is enforced.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, TypeVar

from aimass.contract.manifest import Manifest, sha256_of
from aimass.errors import AimassError, ErrorCode

__all__ = ["Lazy", "artifact_path", "class_path", "import_class", "refuse_pickle", "require"]

_T = TypeVar("_T")


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


def refuse_pickle(allowed: bool, what: str) -> None:
    """UNSAFE_FORMAT unless pickles are ``allowed`` (``AIMASS_REGISTRY__ALLOW_PICKLE``)."""
    if not allowed:
        raise AimassError(
            ErrorCode.UNSAFE_FORMAT,
            f"{what} is a pickle, which runs code when it is opened, and pickles are off; "
            "set AIMASS_REGISTRY__ALLOW_PICKLE=true to allow them for files you trust",
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
    for file in manifest.files:
        if file.path == name and sha256_of(path) != file.sha256:
            raise AimassError(
                ErrorCode.INTEGRITY,
                f"{name} changed after its version was loaded: "
                "its sha256 no longer matches the manifest",
            )
    return path
