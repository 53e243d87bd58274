"""``aimass predict``: a file scored through a version as served, held against the model itself."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aimass.lifecycle import predict_file
from aimass.lifecycle.data import read_table
from aimass.registry import Registry
from aimass.runtimes.model import LoadedModel
from aimass.settings import Settings
from aimass.testing.cli import Cli

pytestmark = pytest.mark.slow  # every test runs the aimass command

EXAMPLES = Path(__file__).parents[2] / "examples"
SCORED = ["label", "probability_no", "probability_yes"]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    root = tmp_path_factory.mktemp("predict-cli")
    shutil.copytree(EXAMPLES, root / "examples")
    done = Cli(root)
    done.json("train", "examples/churn.yaml")
    return done


@pytest.fixture(scope="module")
def registry(cli: Cli) -> Iterator[Registry]:
    opened = Registry.from_settings(Settings(home=cli.cwd / "home"))
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def churn(registry: Registry) -> LoadedModel:
    return registry.load("churn", 1)


def _assert_the_models_answers(scored: Any, rows: Any, model: LoadedModel) -> None:
    """``scored`` is ``rows`` unchanged, then the model's own label and probabilities per row."""
    assert list(scored.columns) == [*rows.columns, *SCORED]
    pd.testing.assert_frame_equal(scored[list(rows.columns)], rows)
    assert list(scored["label"]) == list(model.predict(rows))
    proba = model.predict_proba(rows)
    assert model.runtime.labels() == ["no", "yes"]
    np.testing.assert_array_equal(scored[["probability_no", "probability_yes"]].to_numpy(), proba)


def test_predict_scores_a_csv_in_chunks_with_the_models_own_answers(
    cli: Cli, churn: LoadedModel
) -> None:
    rows = pd.read_csv(cli.cwd / "examples" / "churn_new.csv")
    assert rows.isna().any().any()  # missing values go through as evaluation sends them
    done = cli.run("predict", "churn", "examples/churn_new.csv", "--chunk-rows", "37")
    scored = pd.read_csv(io.StringIO(done.stdout), float_precision="round_trip")
    assert len(scored) == len(rows) == 200
    _assert_the_models_answers(scored, rows, churn)  # the target column kept, not used
    assert "100%" in done.stderr and "200 rows" in done.stderr


def test_predict_needs_no_target_and_writes_parquet(cli: Cli, churn: LoadedModel) -> None:
    rows = pd.read_csv(cli.cwd / "examples" / "churn_new.csv").drop(columns=["churned"])
    rows.to_parquet(cli.cwd / "unlabelled.parquet")
    cli.run("alias", "set", "churn", "production", "1")
    summary = cli.json(
        "predict", "churn@production", "unlabelled.parquet", "--out", "scored.parquet"
    )
    assert summary == {
        "model": "churn:1",
        "rows": 200,
        "out": "scored.parquet",
        "columns": [*rows.columns, *SCORED],
    }
    # Read as every data file is (missing text as NaN, like a CSV's), not pandas' None.
    _assert_the_models_answers(read_table(cli.cwd / "scored.parquet"), rows, churn)
    assert not (cli.cwd / "scored.parquet.partial").exists()


def test_predict_errors_are_one_line(cli: Cli) -> None:
    rows = pd.read_csv(cli.cwd / "examples" / "churn_new.csv")
    rows[["contract", "churned"]].to_csv(cli.cwd / "partial.csv", index=False)
    for args, message in [
        (("nope", "examples/churn_new.csv"), "model 'nope' not found"),
        (("churn:9", "examples/churn_new.csv"), "model 'churn' has no version 9"),
        (("churn", "missing.csv"), "data file missing.csv does not exist"),
        (
            ("churn", "partial.csv"),
            "partial.csv: the model needs column(s) "
            "['payment_method', 'tenure_months', 'monthly_charges', 'support_calls']",
        ),
        (("churn", "examples/churn_new.csv", "--out", "x.txt"), "not '.txt'"),
    ]:
        done = cli.run("predict", *args, ok=False)
        assert done.returncode == 1, args
        assert message in " ".join(done.stderr.split()), (args, done.stderr)
        assert done.stdout == "", args
    assert not (cli.cwd / "x.txt").exists()
    # In --json mode the error is the one JSON document on stdout.
    done = cli.run("predict", "churn", "examples/churn_new.csv", "--json", ok=False)
    assert done.returncode == 1
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "invalid_input"
    assert "need --out FILE" in error["message"]


def test_predict_file_is_the_python_api(
    cli: Cli, registry: Registry, churn: LoadedModel, tmp_path: Path
) -> None:
    rows = pd.read_csv(cli.cwd / "examples" / "churn_new.csv")
    shares: list[float] = []
    result = predict_file(
        registry,
        "churn:1",
        cli.cwd / "examples" / "churn_new.csv",
        tmp_path / "scored.csv",
        chunk_rows=64,
        progress=lambda message, share: shares.append(share),
    )
    assert result.rows == 200 and result.model == "churn:1"
    assert len(shares) == 4 and shares == sorted(shares) and shares[-1] == 1.0
    scored = pd.read_csv(tmp_path / "scored.csv", float_precision="round_trip")
    _assert_the_models_answers(scored, rows, churn)
