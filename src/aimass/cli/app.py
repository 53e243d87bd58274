"""The ``aimass`` command: the root of the verb groups and the one place errors are shown.

The root callback takes ``--config`` (also ``AIMASS_CONFIG``), so every verb
reads the same settings, built once (:mod:`aimass.cli.context`). Every command
raises :class:`AimassError` for a user's mistake; :func:`main` prints it as
one line (no traceback) and exits 1. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aimass.cli import (
    alias,
    build,
    card,
    demo,
    evaluate,
    imports,
    keys,
    models,
    predict,
    runs,
    serve,
    train,
    tune,
)
from aimass.cli.context import CliContext
from aimass.cli.output import error_console
from aimass.errors import AimassError

__all__ = ["app", "main"]

app = typer.Typer(
    name="aimass",
    help="aimass: a model library, server and toolbox for every framework.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            envvar="AIMASS_CONFIG",
            help="YAML settings file (environment variables win over it)",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """aimass: a model library, server and toolbox for every framework."""
    state = CliContext(config)
    ctx.obj = state
    ctx.call_on_close(state.close)


app.add_typer(models.app, name="models")
app.add_typer(keys.app, name="keys")
app.command("audit")(keys.audit)
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)
app.command("train")(train.train)
app.command("tune")(tune.tune)
app.command("evaluate")(evaluate.evaluate)
app.command("predict")(predict.predict)
app.add_typer(runs.app, name="runs")
app.add_typer(alias.app, name="alias")
app.command("card")(card.card)
app.command("build")(build.build)
app.add_typer(imports.app, name="import")


def main() -> None:
    """Entry point of the ``aimass`` console script."""
    try:
        app()
    except AimassError as exc:
        error_console.print(f"[red]error:[/red] {exc.message}")
        raise SystemExit(1) from None
