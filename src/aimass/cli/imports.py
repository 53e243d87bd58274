"""``aimass import mlflow PATH``: register models saved by other tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aimass.cli.context import state
from aimass.cli.output import JsonFlag, console, emit_json

__all__ = ["app"]

app = typer.Typer(help="Register models saved by other tools.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Register models saved by other tools."""


@app.command()
def mlflow(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="An MLflow model directory (with an MLmodel file)")],
    name: Annotated[
        str | None, typer.Option(help="Model name [default: the directory's name]")
    ] = None,
    trust: Annotated[
        bool,
        typer.Option("--trust", help="Trust every type in a skops file (you trust its author)"),
    ] = False,
    json: JsonFlag = False,
) -> None:
    """Register an MLflow model (sklearn or python_function flavor), keeping its signature."""
    from aimass.lifecycle.mlflow_import import import_mlflow

    info = import_mlflow(state(ctx).registry, path, name or path.resolve().name, trust_types=trust)
    if json:
        emit_json(info)
        return
    inputs = ", ".join(f"{s.name} {s.datatype.value}" for s in info.manifest.signature.inputs)
    console.print(f"imported [bold]{info.ref}[/bold] ({info.manifest.runtime}): inputs {inputs}")
