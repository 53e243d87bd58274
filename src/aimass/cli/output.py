"""How the CLI speaks: rich tables for people, ``--json`` for scripts, one error format."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Annotated, Any, TypeVar

import orjson
import typer
from pydantic import BaseModel
from rich import box
from rich.console import Console
from rich.table import Table

from aimass.cli.context import state

__all__ = ["JsonFlag", "console", "emit_json", "error_console", "show", "table"]

_T = TypeVar("_T")

console = Console(highlight=False)
error_console = Console(stderr=True, highlight=False)


def _json_mode(ctx: typer.Context, value: bool) -> bool:
    # Marks the call, so that an error it raises is shown as JSON too.
    state(ctx).json = value
    return value


JsonFlag = Annotated[
    bool,
    typer.Option(
        "--json",
        help='Print JSON for scripts (an error too: {"error": {"code", "message"}})',
        callback=_json_mode,
    ),
]
"""The ``--json`` option every command takes."""


def emit_json(value: Any) -> None:
    """Print ``value`` (pydantic models included) as indented JSON on stdout."""
    print(orjson.dumps(value, default=_default, option=orjson.OPT_INDENT_2).decode())


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    whole: Collection[str] = (),
) -> None:
    """Print a table; cells are shown with ``str`` and ``None`` as an empty cell.

    The ``whole`` columns are never wrapped or cut (an id to copy); on a
    narrow terminal the other columns wrap, breaking a long word rather than
    cutting it short.
    """
    # Rules under the header only, one space between columns: 80 columns hold a key's row.
    out = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
    )
    for column in columns:
        out.add_column(column, no_wrap=column in whole, overflow="fold")
    for row in rows:
        out.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(out)


def show(
    found: Sequence[_T],
    json: bool,
    title: str,
    columns: Sequence[str],
    row: Callable[[_T], Sequence[Any]],
    *,
    whole: Collection[str] = (),
) -> None:
    """A listing: ``found`` as JSON for scripts, else a table of one ``row`` per item."""
    if json:
        emit_json(found)
        return
    table(title, columns, [row(item) for item in found], whole=whole)
