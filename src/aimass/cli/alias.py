"""``aimass alias set|delete|history``: move aliases, behind promotion gates when asked.

The one command for aliases (``aimass models`` has none): every move is
atomic, recorded in the alias history and in the audit log.
"""

from __future__ import annotations

from typing import Annotated

import typer

from aimass.cli.context import state
from aimass.cli.output import JsonFlag, console, emit_json, show

__all__ = ["app"]

app = typer.Typer(
    help="Point aliases at versions, with promotion gates; show their history.",
    no_args_is_help=True,
)


@app.command("set")
def set_alias(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name")],
    alias: Annotated[str, typer.Argument(help="Alias name, e.g. production")],
    version: Annotated[int, typer.Argument(help="Version to point at")],
    require: Annotated[
        list[str] | None,
        typer.Option(
            "--require",
            help="Gate METRIC>=NUMBER on the version's recorded evaluation (repeatable)",
        ),
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Point ALIAS at VERSION; with --require, only if the recorded evaluation passes."""
    from aimass.gateway.audit import record_cli_action
    from aimass.lifecycle.gates import Requirement, promote
    from aimass.lifecycle.runs import RunStore

    requirements = [Requirement.parse(text) for text in require or []]
    registry = state(ctx).registry
    previous = promote(registry, RunStore.of(registry), model, alias, version, requirements)
    record_cli_action(
        registry,
        "models.alias.set",
        f"{model}@{alias}",
        version=version,
        previous=previous,
        checked=[str(r) for r in requirements],
    )
    if json:
        emit_json(
            {
                "model": model,
                "alias": alias,
                "version": version,
                "previous": previous,
                "checked": [str(r) for r in requirements],
            }
        )
        return
    gates = f" (passed {', '.join(map(str, requirements))})" if requirements else ""
    console.print(f"{model}@{alias} → {version}{gates}")


@app.command("delete")
def delete_alias(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name")],
    alias: Annotated[str, typer.Argument(help="Alias name")],
    json: JsonFlag = False,
) -> None:
    """Remove an alias."""
    from aimass.gateway.audit import record_cli_action

    registry = state(ctx).registry
    registry.delete_alias(model, alias)
    record_cli_action(registry, "models.alias.delete", f"{model}@{alias}")
    if json:
        emit_json({"model": model, "alias": alias, "version": None})
        return
    console.print(f"{model}@{alias} removed")


@app.command("history")
def history(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name")],
    json: JsonFlag = False,
) -> None:
    """Every move of the model's aliases, oldest first."""
    show(
        state(ctx).registry.alias_history(model),
        json,
        f"alias history of {model}",
        ["alias", "from", "to", "at", "by"],
        lambda e: (e.alias, e.from_version, e.to_version, f"{e.at:%Y-%m-%d %H:%M:%S}", e.by),
    )
