"""aimass: one registry, one inference interface, every framework.

``import aimass`` is cheap: the SDK functions and classes below are imported
on first use, and no framework is imported until a model of it is saved or
loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aimass.errors import AimassError, ErrorCode
    from aimass.registry import Lineage, LineageMethod, Registry, Signature, Task, TensorSpec
    from aimass.runtimes.custom import PythonModel
    from aimass.sdk import (
        default_registry,
        delete,
        get_model,
        list_models,
        list_versions,
        load,
        register,
        set_alias,
        tag,
    )
    from aimass.settings import Settings

__all__ = [
    "AimassError",
    "ErrorCode",
    "Lineage",
    "LineageMethod",
    "PythonModel",
    "Registry",
    "Settings",
    "Signature",
    "Task",
    "TensorSpec",
    "default_registry",
    "delete",
    "get_model",
    "list_models",
    "list_versions",
    "load",
    "register",
    "set_alias",
    "tag",
]

_LOCATIONS = {
    "AimassError": "aimass.errors",
    "ErrorCode": "aimass.errors",
    "Lineage": "aimass.registry",
    "LineageMethod": "aimass.registry",
    "Registry": "aimass.registry",
    "Signature": "aimass.registry",
    "Task": "aimass.registry",
    "TensorSpec": "aimass.registry",
    "PythonModel": "aimass.runtimes.custom",
    "Settings": "aimass.settings",
}


def __getattr__(name: str) -> Any:
    if name in _LOCATIONS:
        return getattr(importlib.import_module(_LOCATIONS[name]), name)
    if name in __all__:
        return getattr(importlib.import_module("aimass.sdk"), name)
    raise AttributeError(f"module 'aimass' has no attribute {name!r}")
