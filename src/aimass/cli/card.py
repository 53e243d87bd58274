"""``aimass card MODEL:VERSION``: write the version's model card (Markdown, HTML, plots)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aimass.cli.context import state
from aimass.cli.output import JsonFlag, console, emit_json

__all__ = ["card"]


def card(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="MODEL:VERSION, MODEL@ALIAS or MODEL (latest)")],
    out: Annotated[
        Path | None, typer.Option(help="Directory to write [default: cards/MODEL-VERSION]")
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Write card.md, card.html and the ROC and confusion matrix plots of a version."""
    from aimass.lifecycle.card import write_card
    from aimass.lifecycle.runs import RunStore

    registry = state(ctx).registry
    info = registry.resolve(ref)
    directory = out or Path("cards") / f"{info.model}-{info.version}"
    files = write_card(RunStore.of(registry), info, directory)
    if json:
        emit_json(
            {
                "markdown": str(files.markdown),
                "html": str(files.html),
                "plots": [str(p) for p in files.plots],
            }
        )
        return
    console.print(f"wrote {files.markdown}, {files.html} and {len(files.plots)} plot(s)")
