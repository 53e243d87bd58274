"""``aimass gc`` and ``models delete`` free what nothing references, and nothing else.

Registrations are killed with SIGKILL in subprocesses at the two points that
leave debris: during an upload (a partial object, on the local store) and just
before the version row is written (complete objects, a model with no version).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from aimass.registry import Registry
from aimass.registry.artifacts import LocalArtifactStore
from aimass.settings import Settings
from aimass.testing.cli import Cli
from tests.integration.processes import registry_env

pytestmark = pytest.mark.slow  # registrations killed in processes, gc by the CLI

_REGISTER = textwrap.dedent(
    """
    import os, signal, sys
    import aimass
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier
    from aimass.registry.store import MetadataStore

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    name, depth, kill_at = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if kill_at == "upload":  # after a local object's bytes are written, before its rename
        os.fsync = die
    elif kill_at == "version":  # objects stored and the model created, no version yet
        MetadataStore.add_version = die
    x, y = load_iris(return_X_y=True)
    tree = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(x, y)
    for _ in range(int(os.environ.get("TIMES", "1"))):
        print(aimass.register(tree, name, sample_input=x[:2]).version, flush=True)
    """
)


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    x, y = load_iris(return_X_y=True)
    return x, y


def _register_in_process(
    settings: Settings, name: str, depth: int, kill_at: str, times: int = 1
) -> subprocess.Popen[str]:
    env = registry_env(settings) | {"TIMES": str(times)}
    return subprocess.Popen(
        [sys.executable, "-c", _REGISTER, name, str(depth), kill_at],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def _cli(settings: Settings) -> Cli:
    cli = Cli(settings.home.parent)
    cli.env = registry_env(settings)
    return cli


def _gc(settings: Settings, *args: str) -> Any:
    return _cli(settings).json("gc", "--older-than", "0", *args)


def _shas(registry: Registry) -> set[str]:
    return {f.sha256 for m in registry.store.all_manifests() for f in m.files}


def test_gc_removes_what_killed_registrations_left_and_keeps_every_version(
    registry: Registry, settings: Settings, iris: Any
) -> None:
    x, y = iris
    registry.register(LogisticRegression(max_iter=300).fit(x, y), "kept", sample_input=x[:2])
    kept = _shas(registry)
    kills = ["version"]
    if isinstance(registry.artifacts, LocalArtifactStore):
        kills.append("upload")
    for depth, kill_at in enumerate(kills, start=2):
        proc = _register_in_process(settings, "victim", depth, kill_at)
        proc.communicate(timeout=180)
        assert proc.returncode == -signal.SIGKILL

    listed = _gc(settings)
    kinds = [item["kind"] for item in listed["items"]]
    assert not listed["removed"]
    assert kinds.count("staging") == len(kills)
    assert "object" in kinds
    assert ("partial" in kinds) == ("upload" in kills)
    assert {"kind": "model", "name": "victim", "bytes": 0} in listed["items"]
    assert not kept & {item["name"] for item in listed["items"]}
    assert listed["bytes"] == sum(item["bytes"] for item in listed["items"]) > 0
    shown = _cli(settings).run("gc", "--older-than", "0").stdout
    assert f"would remove {len(kinds)} items, {listed['bytes']} bytes" in shown
    assert "victim" in shown
    staging = settings.home / "staging"
    assert len(list(staging.iterdir())) == len(kills)  # a dry run removes nothing

    # Collected again and again while another process registers (the same bytes
    # each time, so its puts of existing objects race the collection).
    busy = _register_in_process(settings, "busy", 5, "none", times=4)
    removed = [_gc(settings, "--yes")]
    while busy.poll() is None:
        removed.append(_gc(settings, "--yes"))
    out, _ = busy.communicate(timeout=180)
    assert busy.returncode == 0
    assert out.split() == ["1", "2", "3", "4"]
    gone = {item["name"] for report in removed for item in report["items"]}
    assert {item["name"] for item in listed["items"]} <= gone
    assert not kept & gone

    assert [m.name for m in registry.list_models()] == ["busy", "kept"]
    assert list(staging.iterdir()) == []
    shutil.rmtree(settings.home / "cache", ignore_errors=True)  # every load fetches its objects
    for model in ("kept", "busy"):
        for info in registry.list_versions(model):
            assert registry.load(model, info.version).predict(x[:3]).shape == (3,)
    assert _gc(settings)["items"] == []


def test_models_delete_frees_its_objects_but_keeps_shared_ones(
    registry: Registry, settings: Settings, iris: Any
) -> None:
    x, y = iris
    shared = LogisticRegression(max_iter=300).fit(x, y)
    registry.register(shared, "a", sample_input=x[:2])
    only_a = registry.register(
        DecisionTreeClassifier(max_depth=3).fit(x, y), "a", sample_input=x[:2]
    )
    registry.register(shared, "b", sample_input=x[:2])
    registry.load("a", 2)  # its files are now in the load cache too
    cached = {p.name for p in (settings.home / "cache").iterdir()}
    b_shas = _shas(registry) - {f.sha256 for f in only_a.manifest.files}

    _cli(settings).run("models", "delete", "a", "--yes")

    assert all(registry.artifacts.exists(sha) for sha in b_shas)
    assert not any(registry.artifacts.exists(f.sha256) for f in only_a.manifest.files)
    assert len(list((settings.home / "cache").iterdir())) == len(cached) - 1
    shutil.rmtree(settings.home / "cache")
    assert registry.load("b").predict(x[:3]).shape == (3,)
    assert _gc(settings)["items"] == []
