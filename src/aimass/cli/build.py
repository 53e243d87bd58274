"""``aimass build MODEL:VERSION``: write a container build directory serving that version."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aimass.cli.context import state
from aimass.cli.output import JsonFlag, console, emit_json

__all__ = ["build"]


def build(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="MODEL:VERSION, MODEL@ALIAS or MODEL (latest)")],
    out: Annotated[
        Path | None, typer.Option(help="Directory to write [default: build/MODEL-VERSION]")
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Write a Dockerfile, pinned requirements and the version's artifact into a directory."""
    from aimass.lifecycle.build import build_context

    registry = state(ctx).registry
    info = registry.resolve(ref)
    directory = out or Path("build") / f"{info.model}-{info.version}"
    built = build_context(registry, info.ref, directory)
    if json:
        emit_json(
            {
                "ref": built.ref,
                "directory": str(built.directory),
                "dockerfile": str(built.dockerfile),
                "command": list(built.image_command),
            }
        )
        return
    console.print(
        f"wrote {built.directory}/ (Dockerfile, requirements.txt, vendor/, home/) serving "
        f"{built.ref}\nbuild it with: docker build -t {built.ref.lower()} {built.directory}"
    )
