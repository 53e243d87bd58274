"""``aimass gc``: list, and with ``--yes`` remove, what killed registrations and deletions left."""

from __future__ import annotations

from typing import Annotated

import typer

from aimass.cli.context import state
from aimass.cli.output import JsonFlag, console, emit_json, table

__all__ = ["gc"]


def gc(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Remove what is listed")] = False,
    older_than: Annotated[
        float | None,
        typer.Option(
            "--older-than",
            min=0,
            help="Only debris older than this many minutes (default: registry.gc_grace_minutes)",
        ),
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Unreferenced artifacts, abandoned staging and empty models: listed, or removed with --yes.

    Safe while servers run and registrations are in flight: only debris older
    than the grace period is touched, and nothing a version references.
    """
    from aimass.registry.gc import collect_garbage

    cli = state(ctx)
    grace = cli.settings.registry.gc_grace_minutes if older_than is None else older_than
    report = collect_garbage(cli.registry, grace_minutes=grace, remove=yes)
    if json:
        emit_json(report)
        return
    if not report.items:
        console.print(f"no debris older than {grace:g} minutes")
        return
    verb = "removed" if yes else "would remove"
    table(
        f"debris older than {grace:g} minutes",
        ["KIND", "NAME", "BYTES"],
        [(d.kind, d.name, d.bytes) for d in report.items],
        whole=["NAME"],
    )
    console.print(f"{verb} {len(report.items)} items, {report.bytes} bytes")
    if not yes:
        console.print("run again with --yes to remove them")
