"""Hyper-parameter tuning: an Optuna study over the spec's space, scored by cross-validation.

Each trial sets the sampled pipeline parameters (``model__max_depth``,
``selectkbest__k``…) on a fresh pipeline and scores it by k-fold
cross-validation on the training part only, so the held-out split stays
unseen until the best configuration is trained, evaluated and registered.
The study is bounded by a number of trials, a time limit, or both; its
record (every trial's parameters and score, the best of them, the sampler's
seed) goes into the run and the registered version.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from aimass.contract.manifest import Lineage, LineageMethod
from aimass.errors import AimassError, ErrorCode
from aimass.lifecycle.data import fingerprint, load_dataset
from aimass.lifecycle.evaluate import check_metrics, cross_validate, higher_is_better
from aimass.lifecycle.pipeline import build_pipeline, task_of
from aimass.lifecycle.runs import TrackedJob
from aimass.lifecycle.spec import CVSpec, ParamSpace, TrainSpec
from aimass.lifecycle.train import Trainer, TrainResult, holdout_split
from aimass.runtimes.loading import require

__all__ = ["StudyRecord", "TrialRecord", "TuneResult", "Tuner"]

# The final training's share of the progress bar; the trials fill the rest.
_FINAL_SHARE = 0.1


class TrialRecord(BaseModel):
    """One trial: its parameters and cross-validated score."""

    model_config = ConfigDict(frozen=True)

    number: int
    params: dict[str, Any]
    value: float | None
    state: str


class StudyRecord(BaseModel):
    """What a study did: the objective, the budget, every trial and the best."""

    model_config = ConfigDict(frozen=True)

    metric: str
    direction: str
    cv: str
    seed: int
    trials: list[TrialRecord]
    best_params: dict[str, Any]
    best_value: float
    duration_s: float


@dataclass(frozen=True)
class TuneResult:
    """The study and the training run of its best configuration."""

    study: StudyRecord
    trained: TrainResult


def _suggest(trial: Any, name: str, space: ParamSpace) -> Any:
    if space.type == "categorical":
        return trial.suggest_categorical(name, space.choices)
    assert space.low is not None and space.high is not None  # checked by the spec
    if space.type == "int":
        step = int(space.step) if space.step else 1
        return trial.suggest_int(name, int(space.low), int(space.high), step=step, log=space.log)
    return trial.suggest_float(name, space.low, space.high, step=space.step, log=space.log)


class Tuner(TrackedJob):
    """Runs Optuna studies for training specs and registers the winner."""

    def tune(
        self, spec: TrainSpec, *, trials: int | None = None, timeout_s: float | None = None
    ) -> TuneResult:
        """Search the spec's ``tune.space``; ``trials``/``timeout_s`` override its budget."""
        if spec.tune is None:
            raise AimassError(ErrorCode.INVALID_INPUT, "the spec has no 'tune' section")
        optuna = require("optuna", "lifecycle")
        tune = spec.tune
        n_trials = trials if trials is not None else tune.trials
        timeout = timeout_s if timeout_s is not None else tune.timeout_s
        if n_trials is None and timeout is None:
            raise AimassError(
                ErrorCode.INVALID_INPUT, "bound the study: give tune.trials or tune.timeout_s"
            )
        data = load_dataset(spec.data)
        base = build_pipeline(spec, data.features)
        unknown = sorted(set(tune.space) - set(base.get_params(deep=True)))
        if unknown:
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"tune.space: unknown pipeline parameter(s) {unknown}; they look like "
                "model__C or selectkbest__k",
            )
        task = task_of(base)
        check_metrics(task, [tune.metric])
        direction = tune.direction or ("maximize" if higher_is_better(tune.metric) else "minimize")
        cv_spec = spec.cv or CVSpec()
        x_train, _, y_train, _ = holdout_split(spec, data, task)
        run = self.runs.start(
            "tune",
            spec.name,
            params={
                "estimator": spec.estimator.name,
                "metric": tune.metric,
                "direction": direction,
                "trials": n_trials,
                "timeout_s": timeout,
                "space": {k: v.model_dump(exclude_none=True) for k, v in tune.space.items()},
            },
            data=fingerprint(data).model_dump(),
            created_by=self.registry.user,
        )
        started = time.monotonic()

        def objective(trial: Any) -> float:
            from sklearn.base import clone

            params = {name: _suggest(trial, name, space) for name, space in tune.space.items()}
            candidate = clone(base).set_params(**params)
            result = cross_validate(
                lambda: clone(candidate),
                x_train,
                y_train,
                task,
                cv_spec,
                seed=spec.seed,
                metrics=[tune.metric],
            )
            if tune.metric not in result.metrics:
                return math.nan  # Optuna records the trial as failed
            return result.metrics[tune.metric].mean

        def after_trial(study: Any, trial: Any) -> None:
            if n_trials is not None:
                fraction = len(study.trials) / n_trials
            else:
                assert timeout is not None
                fraction = (time.monotonic() - started) / timeout
            fraction = min(fraction, 1.0) * (1 - _FINAL_SHARE)
            best = _best_value(study)
            message = f"trial {trial.number + 1}" + (f"/{n_trials}" if n_trials is not None else "")
            if best is not None:
                message += f", best {tune.metric} {best:.4f}"
            self.report(run.id, message, fraction)

        try:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = optuna.create_study(
                direction=direction, sampler=optuna.samplers.TPESampler(seed=spec.seed)
            )
            study.optimize(objective, n_trials=n_trials, timeout=timeout, callbacks=[after_trial])
            if _best_value(study) is None:
                raise AimassError(
                    ErrorCode.INVALID_INPUT,
                    f"no trial could compute {tune.metric}; check the space and the data",
                )
            record = StudyRecord(
                metric=tune.metric,
                direction=direction,
                cv=f"{cv_spec.folds}-fold",
                seed=spec.seed,
                trials=[
                    TrialRecord(
                        number=t.number,
                        params=t.params,
                        value=t.value if t.value is None or math.isfinite(t.value) else None,
                        state=t.state.name.lower(),
                    )
                    for t in study.trials
                ],
                best_params=study.best_params,
                best_value=float(study.best_value),
                duration_s=time.monotonic() - started,
            )
        except BaseException as exc:
            reason = exc.message if isinstance(exc, AimassError) else f"{type(exc).__name__}: {exc}"
            self.runs.fail(run.id, reason)
            raise
        study_json = record.model_dump(mode="json")
        trained = Trainer(self.registry, self.runs, progress=self.progress).train(
            spec,
            params=record.best_params,
            lineage=Lineage(
                method=LineageMethod.TUNED,
                params={"run": run.id, "best": record.best_params, "metric": tune.metric},
            ),
            metadata={"study": study_json},
            run=run,
            run_extra={"study": study_json},
            window=(1 - _FINAL_SHARE, 1.0),
        )
        return TuneResult(study=record, trained=trained)


def _best_value(study: Any) -> float | None:
    try:
        value = study.best_value
    except ValueError:  # no completed trial yet
        return None
    return float(value) if value is not None and math.isfinite(value) else None
