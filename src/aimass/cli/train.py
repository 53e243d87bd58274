"""``aimass train SPEC``: train, evaluate and register a model from a YAML spec."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from aimass.cli.context import state
from aimass.cli.output import JsonFlag, console, emit_json, error_console, table

__all__ = ["metrics_table", "progress_bar", "train"]


@contextmanager
def progress_bar(title: str, *, quiet: bool = False) -> Iterator[Callable[[str, float], None]]:
    """A rich progress bar on stderr, fed by a ``(message, fraction)`` callback."""
    if quiet:
        yield lambda message, fraction: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[step]}"),
        console=error_console,
        redirect_stdout=False,  # stdout may be the command's answer (predict's CSV)
    ) as bar:
        task = bar.add_task(title, total=1.0, step="starting")

        def report(message: str, fraction: float) -> None:
            bar.update(task, completed=fraction, step=message)

        yield report


def metrics_table(title: str, metrics: dict[str, float], cv: Any = None) -> None:
    """Held-out metrics, with the cross-validation mean and spread beside them."""
    columns = ["metric", "value"]
    if cv is not None:
        columns += [f"{cv.scheme} mean", "± std"]
    rows = []
    for name, value in metrics.items():
        row: list[Any] = [name, f"{value:.4f}"]
        if cv is not None:
            spread = cv.metrics.get(name)
            row += [f"{spread.mean:.4f}", f"{spread.std:.4f}"] if spread else ["", ""]
        rows.append(row)
    table(title, columns, rows)


def train(
    ctx: typer.Context,
    spec: Annotated[Path, typer.Argument(help="The training spec (YAML)")],
    json: JsonFlag = False,
) -> None:
    """Train a model from a spec, evaluate it, and register the whole pipeline as a version."""
    from aimass.lifecycle.runs import RunStore
    from aimass.lifecycle.spec import load_spec
    from aimass.lifecycle.train import Trainer

    parsed = load_spec(spec)
    registry = state(ctx).registry
    with progress_bar(f"training {parsed.name}", quiet=json) as report:
        result = Trainer(registry, RunStore.of(registry), progress=report).train(parsed)
    if json:
        emit_json(
            {
                "run": result.run,
                "version": result.version.ref,
                "metrics": result.evaluation.metrics,
                "cross_validation": result.cross_validation,
                "data": result.data,
            }
        )
        return
    metrics_table(
        f"{result.version.ref}: held-out metrics ({result.evaluation.rows} rows)",
        result.evaluation.metrics,
        result.cross_validation,
    )
    console.print(
        f"registered [bold]{result.version.ref}[/bold] (run {result.run.id}, "
        f"data {result.data.sha256[:12]} {result.data.rows}x{result.data.columns})"
    )
