"""The ``aimass`` command: the root of the verb groups and the one place errors are shown.

The root callback takes ``--config`` (also ``AIMASS_CONFIG``), so every verb
reads the same settings, built once (:mod:`aimass.cli.context`), ``-v`` and
``--version``. Every command raises :class:`AimassError` for a user's
mistake; :func:`main` prints it as one line, ``error: MESSAGE`` on stderr, and
exits 1. Its detail (the traceback and its cause) is logged at debug, which
``-v`` shows on stderr. Anything else is a bug in aimass: one line saying so,
naming a file that holds the traceback (``-v`` prints it too), exit 1. Under
``--json`` either one is instead ``{"error": {"code", "message"}}`` on stdout,
so stdout always holds exactly one JSON document. Usage errors (a missing
argument, a value of the wrong type) are typer's: text on stderr, exit 2.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from aimass.cli import (
    alias,
    build,
    card,
    demo,
    deploy,
    evaluate,
    gc,
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
from aimass.cli.output import emit_json, error_console
from aimass.errors import AimassError, ErrorCode
from aimass.version import __version__

__all__ = ["app", "main"]

_log = logging.getLogger("aimass.cli")

app = typer.Typer(
    name="aimass",
    help="aimass: a model library, server and toolbox for every framework.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"aimass {__version__}")
        raise typer.Exit()


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
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log at debug on stderr: an error's detail")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """aimass: a model library, server and toolbox for every framework."""
    if not isinstance(ctx.obj, CliContext):  # called other than through main()
        ctx.obj = CliContext()
    state: CliContext = ctx.obj
    state.config = config
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        package = logging.getLogger("aimass")
        package.addHandler(handler)
        package.setLevel(logging.DEBUG)
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
app.add_typer(deploy.app, name="deploy")
app.command("card")(card.card)
app.command("build")(build.build)
app.add_typer(imports.app, name="import")
app.command("gc")(gc.gc)


def main() -> None:
    """Entry point of the ``aimass`` console script."""
    cli = CliContext()
    try:
        app(obj=cli)
    except AimassError as exc:
        _log.debug("the command failed: %s", exc.message, exc_info=exc)
        _report(cli, exc.code.value, exc.message)
        raise SystemExit(1) from None
    except Exception as exc:
        # A bug, not a user's mistake: say so, and keep the traceback where it can be sent.
        _log.debug("unexpected error", exc_info=exc)
        with tempfile.NamedTemporaryFile(
            "w", prefix="aimass-bug-", suffix=".txt", delete=False
        ) as out:
            traceback.print_exception(exc, file=out)
        _report(
            cli,
            ErrorCode.INTERNAL.value,
            f"a bug in aimass: {type(exc).__name__}: {exc} (traceback in {out.name}; "
            "please report it)",
        )
        raise SystemExit(1) from None


def _report(cli: CliContext, code: str, message: str) -> None:
    if cli.json:
        emit_json({"error": {"code": code, "message": message}})
    else:
        # One line, however long: wrapping would split it for a reader and for grep.
        line = " ".join(message.splitlines())
        error_console.print(f"[red]error:[/red] {escape(line)}", soft_wrap=True)
