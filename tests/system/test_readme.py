"""The README's tour runs as written, so it cannot drift from the code."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from aimass.testing.server import serve_in_process

pytestmark = pytest.mark.slow  # the tours run aimass commands and servers

README = Path(__file__).parents[2] / "README.md"
BIN = Path(sys.executable).parent


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def _tour_block(language: str, marker: str) -> str:
    matches = [b for b in _blocks(language) if marker in b]
    assert len(matches) == 1, f"README should have one {language} block with {marker!r}"
    return matches[0]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIMASS_")}
    clean["AIMASS_HOME"] = str(tmp_path_factory.mktemp("readme-home"))
    clean["PATH"] = f"{BIN}{os.pathsep}{clean['PATH']}"
    return clean


def test_python_tour_runs(env: dict[str, str], tmp_path: Path) -> None:
    code = _tour_block("python", "aimass.register(")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    # Each print prints one line; one the README annotates prints what its comment says.
    prints = [line for line in code.splitlines() if line.startswith("print(")]
    printed = done.stdout.splitlines()
    assert len(printed) == len(prints)
    shown = [
        (out, line.split("  # ", 1)[1])
        for out, line in zip(printed, prints, strict=True)
        if "  # " in line
    ]
    assert shown and all(out == comment for out, comment in shown), shown


def test_cli_tour_runs(env: dict[str, str], tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-c", _tour_block("python", "aimass.register(")],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    for line in _tour_block("bash", "aimass models list").splitlines():
        command = line.split("#", 1)[0].strip()
        if not command:
            continue
        done = subprocess.run(
            shlex.split(command), env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert "Traceback" not in done.stderr, command
        if command.startswith("aimass models delete"):
            # The tour shows the refusal: an alias still points at version 1.
            assert done.returncode == 1 and "point at it" in done.stderr
        else:
            assert done.returncode == 0, f"{command}: {done.stderr}"
    assert (tmp_path / "model.onnx").is_file()  # the tour says where it comes from


def test_the_roles_bullet_names_the_role_the_runs_routes_require() -> None:
    from typing import cast

    from aimass.lifecycle.runs import RunStore
    from aimass.roles import Role
    from aimass.server.runs import RunRoutes

    bullet = README.read_text().split("- **Roles.**", 1)[1].split("\n- **", 1)[0]
    said = dict(re.findall(r"`(\w+)`: (.*?\.)", " ".join(bullet.split())))
    for route in RunRoutes(cast(RunStore, None)).routes():
        assert route.role is Role.DEPLOYER
        assert "/v1/runs" in said["deployer"], said
        assert "`/v1`" not in said["invoker"], said  # not all of /v1 is an invoker's


def test_serve_tour_runs(env: dict[str, str], tmp_path: Path) -> None:
    block = _tour_block("bash", "aimass serve --demo")
    serve_line, curl = block.split("\n", 1)
    args = shlex.split(serve_line.split("#", 1)[0])
    assert args[:2] == ["aimass", "serve"]
    clients = _tour_block("python", "tritonclient")
    with serve_in_process(args[2:], env=env) as served:
        # Ready means the demo models are loaded, not merely registered.
        loaded = httpx.post(f"{served.url}/v2/repository/index", json={"ready": True}).json()
        assert {entry["name"] for entry in loaded} == {"iris", "digits-mlp", "iris-onnx", "minilm"}
        address = served.url.removeprefix("http://")
        done = subprocess.run(
            ["bash", "-c", curl.replace("localhost:8000", address)],
            capture_output=True,
            text=True,
            check=True,
        )
        answer = json.loads(done.stdout)
        assert answer["model_name"] == "iris"
        assert {o["name"]: o["data"] for o in answer["outputs"]}["label"] == [0]

        run = subprocess.run(
            [sys.executable, "-c", clients.replace("localhost:8000", address)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.split() == ["[0]", "384"]
        code, stderr = served.stop()
    assert code == 0, stderr


def test_securing_a_deployment_runs(env: dict[str, str], tmp_path: Path) -> None:
    block = _tour_block("bash", "aimass keys create --name ops")
    lines = [line for line in block.splitlines() if line.strip()]
    serve_at = next(i for i, line in enumerate(lines) if line.startswith("aimass serve"))
    home = tmp_path / "secured-home"  # its own registry: keys here must not close the tour's
    secured = {**env, "AIMASS_HOME": str(home), "COLUMNS": "200"}  # a wide table
    setup = "\n".join(["set -e", *lines[:serve_at], 'printf %s "$KEY"'])
    created = subprocess.run(
        ["bash", "-c", setup], env=secured, cwd=tmp_path, capture_output=True, text=True
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.rsplit("\n", 1)[-1]
    assert key.startswith("aimass_")
    assert "web-app" in created.stdout and "invoker" in created.stdout  # the list
    args = shlex.split(lines[serve_at].split("#", 1)[0])
    outputs = []
    with serve_in_process(args[2:], env=secured) as served:
        address = served.url.removeprefix("http://")
        for line in lines[serve_at + 1 :]:
            done = subprocess.run(
                ["bash", "-c", line.replace("localhost:8000", address)],
                env={**secured, "KEY": key},
                cwd=tmp_path,
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, f"{line}: {done.stderr}"
            outputs.append(done.stdout + done.stderr)
        code, stderr = served.stop()
    assert code == 0, stderr
    metadata, anonymous, out_of_scope, admin, revoked, audit = outputs
    assert json.loads(metadata)["name"] == "iris"
    assert "an API key is required" in json.loads(anonymous)["error"]
    assert json.loads(out_of_scope) == {"error": "this API key may not use model 'minilm'"}
    assert {k["name"] for k in json.loads(admin)} == {"ops", "web-app"}
    assert "revoked" in revoked
    assert "keys.revoke" in audit and "keys.create" in audit


def _run_commands(
    commands: str, env: dict[str, str], cwd: Path
) -> list[tuple[str, str, subprocess.CompletedProcess[str]]]:
    """Run a README block's commands in order; each (command, comment, result).

    A command whose comment reads ``refused: REASON`` must fail with that
    reason: the README quotes it, so it must be the real one.
    """
    ran = []
    for line in commands.splitlines():
        command, _, comment = line.partition("#")
        command = command.strip()
        if not command:
            continue
        done = subprocess.run(
            shlex.split(command), env=env, cwd=cwd, capture_output=True, text=True
        )
        assert "Traceback" not in done.stderr, command
        if comment.strip().startswith("refused:"):
            assert done.returncode == 1, f"{command}: {done.stdout}"
            reason = comment.split("refused:", 1)[1].strip()
            assert reason in " ".join(done.stderr.split())  # rich wraps long lines
        else:
            assert done.returncode == 0, f"{command}: {done.stderr}"
        ran.append((command, comment, done))
    return ran


def test_csv_to_served_model_runs(env: dict[str, str], tmp_path: Path) -> None:
    import shutil

    section = README.read_text().split("## From a CSV to a served, evaluated model", 1)[1]
    commands, serving = re.findall(r"```bash\n(.*?)```", section.split("\n## ", 1)[0], flags=re.S)
    shutil.copytree(README.parent / "examples", tmp_path / "examples")
    own = {**env, "AIMASS_HOME": str(tmp_path / "home")}
    _run_commands(commands, own, tmp_path)
    assert (tmp_path / "cards" / "churn-1" / "roc_curve.png").stat().st_size > 0
    assert (tmp_path / "build" / "churn" / "Dockerfile").is_file()

    serve_line, curl = serving.split("\n", 1)
    args = shlex.split(serve_line.split("#", 1)[0])
    assert args[:2] == ["aimass", "serve"]
    with serve_in_process(args[2:], env=own) as served:
        address = served.url.removeprefix("http://")
        done = subprocess.run(
            ["bash", "-c", curl.replace("localhost:8000", address)],
            capture_output=True,
            text=True,
            check=True,
        )
        answer = json.loads(done.stdout)
        assert answer["model_name"] == "churn" and answer["model_version"] == "1"
        assert {o["name"]: o["data"] for o in answer["outputs"]}["label"] == ["yes"]
        runs = subprocess.run(
            ["curl", "-s", f"{address}/v1/runs/1"], capture_output=True, text=True, check=True
        )
        assert json.loads(runs.stdout)["status"] == "succeeded"
        code, stderr = served.stop()
    assert code == 0, stderr


def test_rolling_out_a_new_version_runs(env: dict[str, str], tmp_path: Path) -> None:
    section = README.read_text().split("## Rolling out a new version safely", 1)[1]
    section = section.split("\n## ", 1)[0]
    commands, serving = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    (python,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    own = {**env, "AIMASS_HOME": str(tmp_path / "home")}
    subprocess.run(  # the tour's my-iris:1, with its production alias
        [sys.executable, "-c", _tour_block("python", "aimass.register(")],
        env=own,
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    for command, comment, done in _run_commands(commands, own, tmp_path):
        if command.startswith("python"):
            assert done.stdout.strip() == comment.strip()  # the version it registered
    serve_line, *calls = [line for line in serving.splitlines() if line.strip()]
    args = shlex.split(serve_line.split("#", 1)[0])
    assert args[:2] == ["aimass", "serve"]
    outputs = []
    with serve_in_process(args[2:], env=own) as served:
        address = served.url.removeprefix("http://")
        for line in calls:
            done = subprocess.run(
                ["bash", "-c", line.replace("localhost:8000", address)],
                capture_output=True,
                text=True,
                check=True,
            )
            outputs.append(json.loads(done.stdout))
        code, stderr = served.stop()
    assert code == 0, stderr
    answer, shown, split, rolled_back, history = outputs
    assert {o["name"]: o["data"] for o in answer["outputs"]}["label"] == [0]
    assert answer["model_version"] == "2"  # the swap's my-iris:2 answered
    assert shown["name"] == "iris-web" and shown["targets"] == [{"ref": "my-iris:2", "weight": 100}]
    assert split["targets"] == [{"ref": "my-iris:1", "weight": 100}]
    assert rolled_back["targets"] == shown["targets"]
    assert [e["kind"] for e in history["events"]][-2:] == ["set", "rollback"]
    done = subprocess.run(
        [sys.executable, "-c", python], env=own, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    prints = [line for line in python.splitlines() if line.startswith("print(")]
    assert done.stdout.splitlines() == [line.split("  # ", 1)[1] for line in prints]
