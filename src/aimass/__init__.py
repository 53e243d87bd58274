"""aimass: one registry, one inference interface, every framework.

``import aimass`` is cheap: the SDK functions and classes below are imported
on first use, and no framework is imported until a model of it is saved or
loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aimass.lazy import lazy_exports

if TYPE_CHECKING:
    from aimass.contract.manifest import Lineage, LineageMethod
    from aimass.contract.signature import Signature, Task, TensorSpec
    from aimass.errors import AimassError, ErrorCode
    from aimass.registry import Registry
    from aimass.runtimes.custom import PythonModel
    from aimass.sdk import (
        default_registry,
        delete,
        deployments,
        get_model,
        list_models,
        list_versions,
        load,
        register,
        set_alias,
        tag,
    )
    from aimass.settings import Settings
    from aimass.version import __version__

_SDK = "aimass.sdk"
_LOCATIONS = {
    "AimassError": "aimass.errors",
    "ErrorCode": "aimass.errors",
    "Lineage": "aimass.contract.manifest",
    "LineageMethod": "aimass.contract.manifest",
    "PythonModel": "aimass.runtimes.custom",
    "Registry": "aimass.registry",
    "Settings": "aimass.settings",
    "Signature": "aimass.contract.signature",
    "Task": "aimass.contract.signature",
    "TensorSpec": "aimass.contract.signature",
    "default_registry": _SDK,
    "delete": _SDK,
    "deployments": _SDK,
    "get_model": _SDK,
    "list_models": _SDK,
    "list_versions": _SDK,
    "load": _SDK,
    "register": _SDK,
    "set_alias": _SDK,
    "tag": _SDK,
    "__version__": "aimass.version",
}

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
    "__version__",
    "default_registry",
    "delete",
    "deployments",
    "get_model",
    "list_models",
    "list_versions",
    "load",
    "register",
    "set_alias",
    "tag",
]

__getattr__ = lazy_exports(__name__, _LOCATIONS)
