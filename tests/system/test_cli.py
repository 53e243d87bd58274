"""The ``aimass`` command, run as a user runs it: a subprocess on a fresh AIMASS_HOME."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from aimass.testing.cli import Cli
from aimass.testing.models import iris_classifier, iris_onnx
from tests.conftest import PickleTrap


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    yield Cli(tmp_path_factory.mktemp("cli"))


@pytest.fixture(scope="module")
def demo(cli: Cli) -> dict[str, Any]:
    report: dict[str, Any] = cli.json("demo")
    return report


def _flat(text: str) -> str:
    """What the terminal wrapped, back on one line."""
    return " ".join(text.split())


def test_with_pickles_off_register_refuses_a_pickle_before_opening_it(
    tmp_path: Path, pickle_trap: PickleTrap
) -> None:
    strict = Cli(tmp_path)
    strict.env["AIMASS_REGISTRY__ALLOW_PICKLE"] = "false"
    joblib.dump(pickle_trap, tmp_path / "clf.joblib")
    done = strict.run("models", "register", "jl3", str(tmp_path / "clf.joblib"), ok=False)
    assert done.returncode == 1
    message = _flat(done.stderr)
    assert "clf.joblib is a pickle" in message and "pickles are off" in message
    assert "set AIMASS_REGISTRY__ALLOW_PICKLE=true" in message
    assert not pickle_trap.marker.exists()


def test_register_names_the_runtime_option_and_what_was_wrong(cli: Cli, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model\n")
    unknown = cli.run("models", "register", "x", str(notes), ok=False)
    assert unknown.returncode == 1
    message = _flat(unknown.stderr)
    assert "pass --runtime (one of: python, xgboost, lightgbm, sklearn, torch, onnx" in message
    assert "runtime=..." not in message
    wrong = cli.run("models", "register", "x", "/etc/passwd", "--runtime", "onnx", ok=False)
    assert wrong.returncode == 1
    assert "/etc/passwd is not a model file or directory the onnx runtime reads" in _flat(
        wrong.stderr
    )


def test_demo_registers_every_demo_model_with_a_production_alias(
    cli: Cli, demo: dict[str, Any]
) -> None:
    assert {name: entry["status"] for name, entry in demo.items()} == {
        "iris": "registered",
        "digits-mlp": "registered",
        "iris-onnx": "registered",
        "minilm": "registered",
    }
    listed = {m["name"]: m for m in cli.json("models", "list")}
    assert set(listed) == set(demo)
    assert all(m["aliases"] == {"production": 1} for m in listed.values())
    assert listed["minilm"]["task"] == "embedding"
    again = cli.json("demo")
    assert all(entry["status"] == "present" for entry in again.values())


def test_show_prints_the_model_and_a_version_in_full(cli: Cli, demo: dict[str, Any]) -> None:
    shown = cli.json("models", "show", "iris")
    assert shown["model"]["name"] == "iris"
    assert [v["version"] for v in shown["versions"]] == [1]
    version = cli.json("models", "show", "iris@production")
    assert version["manifest"]["signature"]["inputs"][0]["shape"] == [-1, 4]
    assert len(version["manifest"]["files"][0]["sha256"]) == 64
    table = cli.run("models", "show", "iris:1").stdout
    assert "signature" in table and "label" in table


def test_register_files_alias_tag_and_search(
    cli: Cli, demo: dict[str, Any], tmp_path: Path
) -> None:
    model, _ = iris_onnx()
    onnx_file = tmp_path / "iris.onnx"
    onnx_file.write_bytes(model.SerializeToString())
    registered = cli.json("models", "register", "iris-file", str(onnx_file), "--tag", "src=file")
    assert (registered["version"], registered["manifest"]["runtime"]) == (1, "onnx")

    clf, _ = iris_classifier()
    joblib.dump(clf, tmp_path / "iris.joblib")
    second = cli.run("models", "register", "iris-file", str(tmp_path / "iris.joblib"))
    assert "registered iris-file:2 (sklearn)" in second.stdout
    assert "pickle" in second.stderr  # the warning before opening a pickle

    cli.run("models", "alias", "iris-file", "staging", "1")
    cli.run("models", "alias", "iris-file", "staging", "2")
    history = cli.json("models", "alias", "iris-file", "--history")
    assert [(e["from_version"], e["to_version"]) for e in history] == [(None, 1), (1, 2)]

    cli.run("models", "tag", "iris-file", "team=vision")
    assert [m["name"] for m in cli.json("models", "list", "--tag", "team=vision")] == ["iris-file"]
    assert [m["name"] for m in cli.json("models", "list", "--name", "iris-f*")] == ["iris-file"]
    assert {m["name"] for m in cli.json("models", "list", "--task", "embedding")} == {"minilm"}

    audited = [(e["action"], e["target"]) for e in reversed(cli.json("audit"))]
    assert audited[-5:] == [
        ("models.register", "iris-file:1"),
        ("models.register", "iris-file:2"),
        ("models.alias.set", "iris-file@staging"),
        ("models.alias.set", "iris-file@staging"),
        ("models.tag", "iris-file"),
    ]
    assert all(e["actor"] == "cli:local" for e in cli.json("audit"))


def test_delete_is_refused_while_aliased_with_a_friendly_error(
    cli: Cli, demo: dict[str, Any]
) -> None:
    refused = cli.run("models", "delete", "iris:1", "--yes", ok=False)
    assert refused.returncode == 1
    assert "production" in refused.stderr
    cli.run("models", "alias", "iris", "production", "--delete")
    cli.run("models", "delete", "iris:1", "--yes")
    assert cli.json("models", "show", "iris")["versions"] == []


def test_unknown_model_and_bad_arguments_are_friendly(cli: Cli) -> None:
    missing = cli.run("models", "show", "no-such-model", ok=False)
    assert missing.returncode == 1
    assert "no-such-model" in missing.stderr and "not found" in missing.stderr
    bad_ref = cli.run("models", "show", "iris:latest", ok=False)
    assert bad_ref.returncode == 1 and "must be a number" in bad_ref.stderr
    usage = cli.run("models", "alias", ok=False)
    assert usage.returncode == 2


def test_demo_models_load_in_a_fresh_process_and_predict(cli: Cli, demo: dict[str, Any]) -> None:
    clf, x = iris_classifier()
    script = (
        "import json, numpy as np, aimass\n"
        "from sklearn.datasets import load_iris, load_digits\n"
        "x = load_iris().data\n"
        "onnx = aimass.load('iris-onnx@production')\n"
        "out = {'iris-onnx': onnx.predict(x.astype('float32')).tolist(),\n"
        "       'digits': aimass.load('digits-mlp').predict(load_digits().data[:5] / 16.0).shape,\n"
        "       'minilm': aimass.load('minilm').predict(['hello world']).shape}\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=cli.env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    np.testing.assert_array_equal(out["iris-onnx"], clf.predict(x))
    assert out["digits"] == [5, 10]
    assert out["minilm"] == [1, 384]
