"""What every command of one ``aimass`` call shares: its settings, built once, and the registry.

:func:`aimass.cli.app.main` makes one :class:`CliContext` and the root callback
fills it from ``--config`` (or ``AIMASS_CONFIG``); commands
take it from their ``typer.Context``, and ``--json`` marks it, so ``main``
knows how to show an error. The settings are built on first use and the
registry is opened on first use, then closed when the command ends.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import typer

from aimass.registry import Registry
from aimass.settings import Settings, load_settings

__all__ = ["CliContext", "state"]


class CliContext:
    """The settings and the registry of one CLI call, and how it wants errors shown."""

    def __init__(self, config: Path | None = None) -> None:
        self.config = config
        self.json = False
        self._registry: Registry | None = None

    @cached_property
    def settings(self) -> Settings:
        """The settings: the config file, then the environment."""
        return load_settings(self.config)

    @property
    def registry(self) -> Registry:
        """The registry the settings describe, opened on first use."""
        if self._registry is None:
            self._registry = Registry.from_settings(self.settings)
        return self._registry

    def close(self) -> None:
        """Close the registry, if it was opened."""
        if self._registry is not None:
            self._registry.close()
            self._registry = None


def state(ctx: typer.Context) -> CliContext:
    """The call's :class:`CliContext`, made by ``main`` (or the root callback)."""
    found = ctx.find_root().obj
    assert isinstance(found, CliContext), "the root callback makes the CLI context"
    return found
