"""How the CLI speaks: rich tables for people, ``--json`` for scripts, one error format."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

import orjson
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

__all__ = ["JsonFlag", "console", "emit_json", "error_console", "show", "table"]

_T = TypeVar("_T")

console = Console(highlight=False)
error_console = Console(stderr=True, highlight=False)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
"""The ``--json`` option every command takes."""


def emit_json(value: Any) -> None:
    """Print ``value`` (pydantic models included) as indented JSON on stdout."""
    print(orjson.dumps(value, default=_default, option=orjson.OPT_INDENT_2).decode())


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a table; cells are shown with ``str`` and ``None`` as an empty cell."""
    out = Table(title=title, title_justify="left")
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(out)


def show(
    found: Sequence[_T],
    json: bool,
    title: str,
    columns: Sequence[str],
    row: Callable[[_T], Sequence[Any]],
) -> None:
    """A listing: ``found`` as JSON for scripts, else a table of one ``row`` per item."""
    if json:
        emit_json(found)
        return
    table(title, columns, [row(item) for item in found])
