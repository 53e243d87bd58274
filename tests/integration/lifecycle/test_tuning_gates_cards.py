"""Tuning beats the defaults, gates refuse with the reason, cards are written with plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from aimass.contract.manifest import LineageMethod
from aimass.contract.signature import Task
from aimass.errors import AimassError, ErrorCode
from aimass.lifecycle.assessment import assess
from aimass.lifecycle.card import write_card
from aimass.lifecycle.data import load_dataset
from aimass.lifecycle.evaluate import cross_validate
from aimass.lifecycle.gates import Requirement, promote
from aimass.lifecycle.pipeline import build_pipeline
from aimass.lifecycle.runs import SUCCEEDED, RunStore
from aimass.lifecycle.spec import load_spec
from aimass.lifecycle.train import Trainer, TrainResult, holdout_split
from aimass.lifecycle.tune import Tuner, TuneResult
from aimass.registry import Registry

EXAMPLES = Path(__file__).parents[3] / "examples"


@pytest.fixture(scope="module")
def tuned(lc_registry: Registry, runs: RunStore) -> TuneResult:
    spec = load_spec(EXAMPLES / "breast_cancer.yaml")
    return Tuner(lc_registry, runs).tune(spec, trials=10)


@pytest.fixture(scope="module")
def churn(lc_registry: Registry, runs: RunStore) -> TrainResult:
    return Trainer(lc_registry, runs).train(load_spec(EXAMPLES / "churn.yaml"))


def test_tuning_beats_the_default_configuration(tuned: TuneResult) -> None:
    spec = load_spec(EXAMPLES / "breast_cancer.yaml")
    assert spec.cv is not None
    data = load_dataset(spec.data)
    default = build_pipeline(spec, data.features)
    x_train, _, y_train, _ = holdout_split(spec, data, Task.CLASSIFICATION)
    baseline = cross_validate(
        lambda: clone(default),
        x_train,
        y_train,
        Task.CLASSIFICATION,
        spec.cv,
        seed=spec.seed,
        metrics=["f1_macro"],
    ).metrics["f1_macro"]
    study = tuned.study
    assert len(study.trials) == 10
    assert study.best_value > baseline.mean
    best = max(t.value for t in study.trials if t.value is not None)
    assert study.best_value == best
    assert (
        tuned.trained.pipeline.get_params()["selectkbest__k"] == study.best_params["selectkbest__k"]
    )


def test_the_best_model_is_registered_with_the_studys_record(
    tuned: TuneResult, runs: RunStore
) -> None:
    version = tuned.trained.version
    assert version.manifest.lineage.method is LineageMethod.TUNED
    assert version.manifest.lineage.params["best"] == tuned.study.best_params
    assert version.metadata["study"]["best_value"] == tuned.study.best_value
    assert len(version.metadata["study"]["trials"]) == 10
    run = runs.get(tuned.trained.run.id)
    assert (run.kind, run.status, run.progress) == ("tune", SUCCEEDED, 1.0)
    assert run.version == version.version
    assert run.params["metric"] == "f1_macro" and run.params["trials"] == 10
    assert run.extra["study"]["best_params"] == tuned.study.best_params


def test_tuning_refuses_an_unknown_parameter(lc_registry: Registry, runs: RunStore) -> None:
    spec = load_spec(EXAMPLES / "breast_cancer.yaml")
    assert spec.tune is not None
    space = {"model__nope": spec.tune.space["model__C"]}
    bad = spec.model_copy(update={"tune": spec.tune.model_copy(update={"space": space})})
    with pytest.raises(AimassError, match=r"unknown pipeline parameter\(s\) \['model__nope'\]"):
        Tuner(lc_registry, runs).tune(bad)


def test_gate_refuses_with_the_reason(
    churn: TrainResult, lc_registry: Registry, runs: RunStore
) -> None:
    f1 = churn.evaluation.metrics["f1_macro"]
    with pytest.raises(AimassError) as caught:
        promote(lc_registry, runs, "churn", "production", 1, [Requirement.parse("f1_macro>=0.99")])
    assert caught.value.code is ErrorCode.CONFLICT
    assert f"f1_macro is {f1:.4g}, required >=0.99" in caught.value.message
    assert "held-out split of training run" in caught.value.message
    assert "production" not in lc_registry.get_model("churn").aliases


def test_gate_passes_and_moves_the_alias(
    churn: TrainResult, lc_registry: Registry, runs: RunStore
) -> None:
    gates = [Requirement.parse("f1_macro>=0.6"), Requirement.parse("log_loss<1")]
    assert promote(lc_registry, runs, "churn", "staging", 1, gates) is None
    assert lc_registry.get_model("churn").aliases["staging"] == 1


def test_gate_reads_the_newest_evaluation_run(
    churn: TrainResult, lc_registry: Registry, runs: RunStore
) -> None:
    assessed = assess(lc_registry, runs, "churn:1", EXAMPLES / "churn_new.csv")
    measured = assessed.evaluation.metrics["accuracy"]
    assert measured != churn.evaluation.metrics["accuracy"]
    with pytest.raises(AimassError) as caught:
        promote(
            lc_registry, runs, "churn", "production", 1, [Requirement("accuracy", ">", measured)]
        )
    assert f"evaluation run {assessed.run.id}" in caught.value.message


def test_gate_refuses_a_version_without_an_evaluation(
    lc_registry: Registry, runs: RunStore
) -> None:
    from aimass.testing.models import iris_classifier

    clf, x = iris_classifier()
    lc_registry.register(clf, "plain", sample_input=x[:2])
    with pytest.raises(AimassError, match="has no recorded evaluation"):
        promote(lc_registry, runs, "plain", "production", 1, [Requirement.parse("f1_macro>=0.5")])


def test_evaluating_a_version_matches_sklearn_on_the_pipeline(
    churn: TrainResult, lc_registry: Registry, runs: RunStore
) -> None:
    import pandas as pd
    from sklearn.metrics import f1_score, log_loss

    assessed = assess(lc_registry, runs, "churn:1", EXAMPLES / "churn_new.csv")
    frame = pd.read_csv(EXAMPLES / "churn_new.csv")
    x, y = frame.drop(columns="churned"), frame["churned"]
    assert assessed.evaluation.metrics["f1_macro"] == pytest.approx(
        f1_score(y, churn.pipeline.predict(x), average="macro"), rel=1e-12
    )
    assert assessed.evaluation.metrics["log_loss"] == pytest.approx(
        log_loss(y, churn.pipeline.predict_proba(x)), rel=1e-9
    )
    run = runs.get(assessed.run.id)
    assert (run.kind, run.version, run.data["rows"]) == ("evaluate", 1, 200)


def test_evaluate_refuses_data_without_the_models_columns(
    churn: TrainResult, lc_registry: Registry, runs: RunStore, tmp_path: Path
) -> None:
    import pandas as pd

    path = tmp_path / "partial.csv"
    pd.read_csv(EXAMPLES / "churn_new.csv").drop(columns="contract").to_csv(path, index=False)
    with pytest.raises(AimassError, match=r"needs column\(s\) \['contract'\]"):
        assess(lc_registry, runs, "churn:1", path)


def _is_drawn_png(path: Path) -> bool:
    from matplotlib.image import imread

    pixels = imread(path)
    return bool(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and np.ptp(pixels) > 0)


def test_model_card_files_and_plots(churn: TrainResult, runs: RunStore, tmp_path: Path) -> None:
    files = write_card(runs, churn.version, tmp_path / "card")
    markdown = files.markdown.read_text()
    assert "# Model card: churn:1" in markdown
    assert "Rank customers for a retention call" in markdown  # intended use from the spec
    assert churn.data.sha256 in markdown
    assert "| contract | BYTES | [-1] |" in markdown
    f1 = churn.evaluation.metrics["f1_macro"]
    assert churn.cross_validation is not None
    spread = churn.cross_validation.metrics["f1_macro"]
    assert f"| f1_macro | {f1:.4f} | {spread.mean:.4f} | {spread.std:.4f} |" in markdown
    assert [p.name for p in files.plots] == ["roc_curve.png", "confusion_matrix.png"]
    assert all(_is_drawn_png(p) for p in files.plots)
    page = files.html.read_text()
    assert page.startswith("<!doctype html>") and "<table>" in page
    assert '<img src="roc_curve.png"' in page


def test_card_escapes_markup_from_the_spec(
    lc_registry: Registry, runs: RunStore, tmp_path: Path
) -> None:
    spec = load_spec(EXAMPLES / "iris.yaml")
    card = spec.card.model_copy(update={"intended_use": "<script>alert(1)</script>"})
    result = Trainer(lc_registry, runs).train(
        spec.model_copy(update={"name": "escaped", "card": card, "cv": None})
    )
    files = write_card(runs, result.version, tmp_path / "escaped")
    assert "<script>" not in files.html.read_text()
    assert "&lt;script&gt;" in files.html.read_text()
