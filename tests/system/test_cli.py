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

from aimass.registry import Registry
from aimass.settings import RegistrySettings, Settings
from aimass.testing.cli import Cli
from aimass.testing.models import iris_classifier, iris_onnx
from tests.conftest import PickleTrap

pytestmark = pytest.mark.slow  # every test runs the aimass command


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
    assert listed["iris-onnx"]["task"] == "classification"
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

    cli.run("alias", "set", "iris-file", "staging", "1")
    cli.run("alias", "set", "iris-file", "staging", "2")
    history = cli.json("alias", "history", "iris-file")
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
    cli.run("alias", "delete", "iris", "production")
    cli.run("models", "delete", "iris:1", "--yes")
    assert cli.json("models", "show", "iris")["versions"] == []


def test_unknown_model_and_bad_arguments_are_friendly(cli: Cli) -> None:
    missing = cli.run("models", "show", "no-such-model", ok=False)
    assert missing.returncode == 1
    assert "no-such-model" in missing.stderr and "not found" in missing.stderr
    bad_ref = cli.run("models", "show", "iris:latest", ok=False)
    assert bad_ref.returncode == 1 and "must be a number" in bad_ref.stderr
    usage = cli.run("alias", "set", ok=False)
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


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_an_error_is_one_line_and_verbose_shows_its_detail(cli: Cli) -> None:
    plain = cli.run("models", "show", "no-such-model", ok=False)
    assert plain.returncode == 1
    assert _lines(plain.stderr) == ["error: model 'no-such-model' not found"]
    verbose = subprocess.run(
        [cli.command, "-v", "models", "show", "no-such-model"],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr and "registry/store.py" in verbose.stderr
    assert _lines(verbose.stderr)[-1] == "error: model 'no-such-model' not found"


def test_a_long_error_stays_on_one_line(cli: Cli) -> None:
    done = cli.run("models", "list", "--task", "bogus", ok=False, env={"COLUMNS": "40"})
    assert done.returncode == 1
    [line] = _lines(done.stderr)
    assert line.startswith("error: task must be one of classification, regression, embedding")
    assert line.endswith("not 'bogus'")


def test_in_json_mode_an_error_is_json_on_stdout(cli: Cli) -> None:
    done = cli.run("models", "show", "no-such-model", "--json", ok=False)
    assert done.returncode == 1
    assert json.loads(done.stdout) == {
        "error": {"code": "not_found", "message": "model 'no-such-model' not found"}
    }
    assert done.stderr == ""


def test_a_bug_says_so_in_one_line_and_keeps_its_traceback(cli: Cli) -> None:
    script = (
        "import sys\n"
        "from aimass.cli.app import app, main\n"
        "@app.command('boom')\n"
        "def boom(json: bool = False) -> None:\n"
        "    raise ZeroDivisionError('a planted bug')\n"
        "sys.argv = ['aimass', *sys.argv[1:]]\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "boom"], env=cli.env, capture_output=True, text=True
    )
    assert done.returncode == 1
    [line] = _lines(done.stderr)
    assert line.startswith("error: a bug in aimass: ZeroDivisionError: a planted bug")
    saved = Path(line.split("traceback in ", 1)[1].split(";", 1)[0])
    assert "Traceback" in saved.read_text() and "a planted bug" in saved.read_text()
    saved.unlink()
    verbose = subprocess.run(
        [sys.executable, "-c", script, "-v", "boom"], env=cli.env, capture_output=True, text=True
    )
    assert "Traceback" in verbose.stderr and ", in boom" in verbose.stderr
    Path(_lines(verbose.stderr)[-1].split("traceback in ", 1)[1].split(";", 1)[0]).unlink()


def test_version_comes_from_the_installed_distribution(cli: Cli) -> None:
    from importlib.metadata import version

    import aimass

    assert cli.run("--version").stdout == f"aimass {version('aimass')}\n"
    assert aimass.__version__ == version("aimass")


def test_management_commands_answer_json(cli: Cli, tmp_path: Path) -> None:
    model, _ = iris_onnx()
    onnx_file = tmp_path / "json.onnx"
    onnx_file.write_bytes(model.SerializeToString())
    cli.run("models", "register", "json-iris", str(onnx_file), "--tag", "src=file")
    cli.run("models", "register", "json-iris", str(onnx_file))
    tagged = cli.json("models", "tag", "json-iris:1", "team=ml")
    assert tagged == {"model": "json-iris", "version": 1, "tags": {"src": "file", "team": "ml"}}
    moved = cli.json("alias", "set", "json-iris", "staging", "1")
    assert (moved["version"], moved["previous"]) == (1, None)
    removed = cli.json("alias", "delete", "json-iris", "staging")
    assert removed == {"model": "json-iris", "alias": "staging", "version": None}
    archived = cli.json("models", "archive", "json-iris:2")
    assert (archived["model"], archived["version"], archived["status"]) == (
        "json-iris",
        2,
        "archived",
    )
    deleted = cli.json("models", "delete", "json-iris:2", "--yes")
    assert deleted == {"model": "json-iris", "version": 2, "deleted": True}


def test_models_list_shows_the_tags_of_the_latest_version(cli: Cli, tmp_path: Path) -> None:
    model, _ = iris_onnx()
    onnx_file = tmp_path / "tagged.onnx"
    onnx_file.write_bytes(model.SerializeToString())
    cli.run("models", "register", "tag-iris", str(onnx_file), "--tag", "stage=old")
    cli.run("models", "register", "tag-iris", str(onnx_file), "--tag", "stage=new")
    cli.run("models", "tag", "tag-iris", "owner=ana")
    table = cli.run("models", "list", "--name", "tag-iris", env={"COLUMNS": "200"}).stdout
    assert "owner=ana, stage=new" in table and "stage=old" not in table
    [listed] = cli.json("models", "list", "--name", "tag-iris")
    assert (listed["tags"], listed["latest_tags"]) == ({"owner": "ana"}, {"stage": "new"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["models", "list", "--task", "bogus"], "task must be one of classification, regression"),
        (["runs", "list", "--kind", "bogus"], "kind must be one of train, tune, evaluate"),
        (["runs", "compare", "1"], "compare takes two or more run ids, got 1"),
        (["alias", "set", "iris-onnx", "my alias", "1"], "alias 'my alias' must start with"),
        (["alias", "set", "iris-onnx", "latest", "1"], "alias 'latest' is reserved"),
    ],
)
def test_bad_values_are_errors_naming_what_is_valid(
    cli: Cli, demo: dict[str, Any], args: list[str], message: str
) -> None:
    done = cli.run(*args, ok=False)
    assert done.returncode == 1
    assert message in done.stderr


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_version_number_no_database_holds_is_one_not_found_line(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    cli = Cli(tmp_path)
    registry_settings = RegistrySettings()
    env: dict[str, str] = {}
    if database == "postgres":
        url = request.getfixturevalue("postgres_database")()
        registry_settings = RegistrySettings(database_url=url)
        env["AIMASS_REGISTRY__DATABASE_URL"] = url
    registry = Registry.from_settings(Settings(home=tmp_path / "home", registry=registry_settings))
    clf, x = iris_classifier()
    registry.register(clf, "iris", sample_input=x[:2])
    registry.close()
    # Past 2**31 - 1 PostgreSQL's INTEGER refuses the comparison; past 2**63 - 1 SQLite's does.
    for number in (2**31, 2**63, 10**20):
        for args, words in (
            (("models", "show", f"iris:{number}"), f"model 'iris' has no version {number}"),
            (("runs", "show", str(number)), f"run {number} not found"),
        ):
            done = cli.run(*args, ok=False, env=env)
            assert done.returncode == 1, done.stderr
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert words in _flat(done.stderr)
