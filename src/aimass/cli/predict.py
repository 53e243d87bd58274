"""``aimass predict MODEL DATA``: score every row of a file with a version, as it is served."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from aimass.cli.context import state
from aimass.cli.output import JsonFlag, console, emit_json
from aimass.cli.train import progress_bar
from aimass.errors import AimassError, ErrorCode

__all__ = ["predict"]


def predict(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="MODEL, MODEL:VERSION or MODEL@ALIAS")],
    data: Annotated[Path, typer.Argument(help="A .csv or .parquet file of rows to score")],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write the scores to this .csv or .parquet file [default: CSV on stdout]"
        ),
    ] = None,
    chunk_rows: Annotated[int, typer.Option(min=1, help="Rows scored at a time")] = 10_000,
    json: JsonFlag = False,
) -> None:
    """Score a file: its columns plus the model's outputs (labels, per-class probabilities).

    A target column may be there or not; it is kept as it is and not given to the model.
    """
    from aimass.lifecycle.scoring import BatchScoring

    if json and out is None:
        raise AimassError(
            ErrorCode.INVALID_INPUT, "--json prints a summary, so the scores need --out FILE"
        )
    sink = out if out is not None else sys.stdout
    scoring = BatchScoring(state(ctx).registry, ref, data, sink, chunk_rows=chunk_rows)
    with progress_bar(f"scoring {data.name} with {scoring.model.ref}", quiet=json) as report:
        result = scoring.run(report)
    if json:
        emit_json(result)
    elif out is not None:
        console.print(f"scored {result.rows} rows with {result.model} into {out}")
