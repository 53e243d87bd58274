"""Lazy exports: a package's public names, each imported from its module on first use.

``import aimass`` (or ``aimass.lifecycle``) must stay cheap: the names a
package offers live in modules that import the registry, SQLAlchemy or
scikit-learn, so a package hands out a module ``__getattr__`` made here
instead of importing them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, locations: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` giving each name of ``locations`` from the module it names."""

    def __getattr__(name: str) -> Any:
        module = locations.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
