"""``aimass evaluate MODEL:VERSION DATA``: score a registered version on a data file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aimass.cli.context import state
from aimass.cli.output import JsonFlag, console, emit_json, table
from aimass.cli.train import metrics_table

__all__ = ["evaluate"]


def evaluate(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="MODEL:VERSION, MODEL@ALIAS or MODEL (latest)")],
    data: Annotated[Path, typer.Argument(help="A .csv or .parquet file with the target column")],
    target: Annotated[
        str | None, typer.Option(help="Target column [default: the one it was trained on]")
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option(help="Metric to compute (repeatable) [default: all]")
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Evaluate a version as it is served, and record the evaluation as a run."""
    from aimass.lifecycle.assessment import assess
    from aimass.lifecycle.runs import RunStore

    registry = state(ctx).registry
    result = assess(registry, RunStore.of(registry), ref, data, target=target, metrics=metric)
    evaluation = result.evaluation
    if json:
        emit_json({"run": result.run, "evaluation": evaluation})
        return
    ref_done = result.run.ref
    metrics_table(f"{ref_done} on {data} ({evaluation.rows} rows)", evaluation.metrics)
    if evaluation.confusion_matrix is not None:
        labels = [str(label) for label in evaluation.labels]
        table(
            "confusion matrix (rows: true, columns: predicted)",
            ["", *labels],
            [[label, *row] for label, row in zip(labels, evaluation.confusion_matrix, strict=True)],
        )
    for name, reason in evaluation.skipped.items():
        console.print(f"[yellow]{name} skipped:[/yellow] {reason}")
    console.print(f"recorded as run {result.run.id}")
