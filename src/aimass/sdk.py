"""The Python SDK: one-call register, load and manage, on the default registry.

The default registry is the one the settings describe (``AIMASS_HOME`` and
``AIMASS_REGISTRY__*``), opened on first use and kept for the process. Code
that needs another registry builds one with ``Registry.from_settings`` and
calls the same methods on it.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from aimass.contract.reference import ModelRef
from aimass.registry.records import ModelInfo, VersionInfo
from aimass.registry.registry import Registry
from aimass.runtimes.model import LoadedModel
from aimass.settings import Settings, load_settings

if TYPE_CHECKING:
    from aimass.deployments.manager import DeploymentManager

__all__ = [
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


@cache
def _settings() -> Settings:
    return load_settings()


@cache
def default_registry() -> Registry:
    """The registry the environment's settings describe, opened once per process."""
    return Registry.from_settings(_settings())


def register(model: Any, name: str, **options: Any) -> VersionInfo:
    """Register a trained object as the next version of ``name``; see :meth:`Registry.register`."""
    return default_registry().register(model, name, **options)


def load(name: str, version: int | None = None, *, alias: str | None = None) -> LoadedModel:
    """Load a version to predict locally.

    ``load("iris")``, ``load("iris", 2)``, ``load("iris", alias="production")``,
    or a reference: ``load("iris:2")``, ``load("iris@production")``.
    """
    if version is None and alias is None:
        name, version, alias = ModelRef.parse(name)
    return default_registry().load(name, version, alias=alias)


def list_models(**filters: Any) -> list[ModelInfo]:
    """Models, filtered by ``name=``, ``tag=`` and ``task=``."""
    return default_registry().list_models(**filters)


def get_model(name: str) -> ModelInfo:
    """One model's description."""
    return default_registry().get_model(name)


def list_versions(name: str, *, include_archived: bool = False) -> list[VersionInfo]:
    """A model's versions, oldest first."""
    return default_registry().list_versions(name, include_archived=include_archived)


def set_alias(name: str, alias: str, version: int) -> int | None:
    """Point an alias at a version; returns the version it pointed at before."""
    return default_registry().set_alias(name, alias, version)


def tag(name: str, tags: Mapping[str, str], *, version: int | None = None) -> None:
    """Tag a model, or one of its versions."""
    default_registry().set_tags(name, tags, version=version)


def delete(name: str, version: int | None = None) -> None:
    """Delete one version, or the whole model when no version is given."""
    if version is None:
        default_registry().delete_model(name)
    else:
        default_registry().delete_version(name, version)


def deployments() -> DeploymentManager:
    """The default registry's deployments, changed as the CLI changes them.

    ``deployments().create("web", "iris@production")``, ``.canary("web",
    "iris:4", 10, max_error_rate=0.02)``, ``.set("web", {"iris:4": 100})``,
    ``.rollback("web")``, ``.show("web")``…: weights in percent. Each version
    a change adds is loaded and answers one warm-up request here first; every
    change is recorded as ``sdk:<user>`` (``AIMASS_USER``).
    """
    from aimass.deployments.manager import DeploymentManager

    settings = _settings()
    return DeploymentManager.local(
        default_registry(),
        settings,
        by=f"sdk:{settings.user}",
        source=f"sdk@{socket.gethostname()}",
    )
