"""``aimass tune SPEC``: an Optuna search over the spec's space; registers the best model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aimass.cli.context import state
from aimass.cli.output import JsonFlag, console, emit_json
from aimass.cli.train import metrics_table, progress_bar

__all__ = ["tune"]


def tune(
    ctx: typer.Context,
    spec: Annotated[Path, typer.Argument(help="A training spec with a 'tune' section (YAML)")],
    trials: Annotated[
        int | None, typer.Option(min=1, help="Number of trials [default: the spec's]")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=0.001, help="Stop starting trials after this many seconds")
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Search hyper-parameters with cross-validation, then train and register the best."""
    from aimass.lifecycle.runs import RunStore
    from aimass.lifecycle.spec import load_spec
    from aimass.lifecycle.tune import Tuner

    parsed = load_spec(spec)
    registry = state(ctx).registry
    with progress_bar(f"tuning {parsed.name}", quiet=json) as report:
        result = Tuner(registry, RunStore.of(registry), progress=report).tune(
            parsed, trials=trials, timeout_s=timeout
        )
    trained = result.trained
    if json:
        emit_json(
            {
                "run": trained.run,
                "version": trained.version.ref,
                "study": result.study,
                "metrics": trained.evaluation.metrics,
            }
        )
        return
    study = result.study
    console.print(
        f"{len(study.trials)} trials, best cross-validated {study.metric} "
        f"{study.best_value:.4f} with {study.best_params}"
    )
    metrics_table(
        f"{trained.version.ref}: held-out metrics",
        trained.evaluation.metrics,
        trained.cross_validation,
    )
    console.print(f"registered [bold]{trained.version.ref}[/bold] (run {trained.run.id})")
