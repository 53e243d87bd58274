"""``aimass serve`` as a process at start-up: when it says "connect now", and when it refuses.

The address line is the contract: a client that connects the instant it
appears must be served. A start-up model that is missing, an open server on
an address others reach, and a bad setting each stop the start with one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sklearn.linear_model import LogisticRegression

from aimass.gateway.keys import KeyStore
from aimass.registry import Registry
from aimass.roles import Role
from aimass.settings import Settings
from aimass.testing.models import iris_classifier
from aimass.testing.server import serve_in_process

pytestmark = pytest.mark.slow  # every test starts aimass serve

_IRIS_ROW = {
    "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5, 3, 1, 0]}]
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with ``iris`` and ``broken``, whose artifact is gone."""
    home = tmp_path_factory.mktemp("startup-home")
    registry = Registry.from_settings(Settings(home=home))
    try:
        clf, x = iris_classifier()
        registry.register(clf, "iris", sample_input=x[:2])
        other = LogisticRegression(C=0.5, max_iter=500).fit(x, [0, 1] * 75)
        broken = registry.register(other, "broken", sample_input=x[:2])
        for file in broken.manifest.files:
            registry.artifacts.delete(file.sha256)
    finally:
        registry.close()
    return home


def _env(home: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMASS_")}
    return {**env, "AIMASS_HOME": str(home), **settings}


def _aimass(*args: str) -> list[str]:
    return [sys.executable, "-c", "from aimass.cli.app import main; main()", *args]


@pytest.fixture
def address_line(home: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """Start ``aimass serve -m iris --workers N``; the URL its address line gives, at once."""
    process = subprocess.Popen(
        _aimass("serve", "--port", "0", "-m", "iris", "--workers", str(request.param)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(home),
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("aimass serving on "), line + process.communicate()[1]
        yield line.split()[-1]
    finally:
        process.terminate()
        process.communicate(timeout=60)


@pytest.mark.parametrize("address_line", [1, 2], indirect=True, ids=["one-worker", "two-workers"])
def test_a_start_up_model_answers_the_instant_the_address_line_appears(address_line: str) -> None:
    # No retry and no wait: the line means "connect now".
    with httpx.Client(base_url=address_line, timeout=30) as client:
        inferred = client.post("/v2/models/iris/infer", json=_IRIS_ROW)
        assert inferred.status_code == 200, inferred.text
        assert client.get("/v2/health/ready").status_code == 200


def _run(home: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        _aimass(*args), env=_env(home, **settings), capture_output=True, text=True, timeout=300
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    ("model", "why"), [("nope", "model 'nope' not found"), ("broken", "is missing from")]
)
def test_a_start_up_model_that_does_not_load_stops_the_start(
    home: Path, workers: str, model: str, why: str
) -> None:
    done = _run(home, "serve", "--port", "0", "-m", "iris", "-m", model, "--workers", workers)
    assert done.returncode != 0
    assert "aimass serving on" not in done.stdout
    message = " ".join(done.stderr.split())  # the console wraps its one line
    assert f"could not load start-up model {model}: " in message, done.stderr
    assert why in message.split(f"start-up model {model}: ")[1]
    assert "--allow-missing" in message


def _serves(home: Path, *args: str, **settings: str) -> httpx.Response:
    """Start ``aimass serve ARGS``, ask for iris's metadata, stop it."""
    with serve_in_process(args, env=_env(home, **settings)) as served:
        port = served.url.rsplit(":", 1)[1]
        return httpx.get(f"http://127.0.0.1:{port}/v2/models/iris", timeout=30)


@pytest.mark.parametrize(
    ("args", "settings"),
    [(["--allow-missing"], {}), ([], {"AIMASS_SERVER__ALLOW_MISSING": "true"})],
    ids=["flag", "setting"],
)
def test_allow_missing_serves_the_models_that_load(
    home: Path, args: list[str], settings: dict[str, str]
) -> None:
    answer = _serves(home, "-m", "iris", "-m", "nope", "-m", "broken", *args, **settings)
    assert answer.status_code == 200, answer.text


def test_an_open_server_beyond_loopback_refuses_to_start(home: Path) -> None:
    done = _run(home, "serve", "--port", "0", "--host", "0.0.0.0")
    assert done.returncode != 0
    message = " ".join(done.stderr.split())  # the console wraps its one line
    assert "refusing to serve on 0.0.0.0 with no API key" in message
    assert "aimass keys create" in message and "--insecure" in message
    assert done.stdout == ""


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_stays_open_without_keys(home: Path, host: str) -> None:
    with serve_in_process(["--host", host], env=_env(home)) as served:
        assert httpx.get(f"{served.url}/v2/health/ready", timeout=30).status_code == 200


@pytest.mark.parametrize(
    ("args", "settings"),
    [
        (["--insecure"], {}),
        ([], {"AIMASS_SERVER__INSECURE": "true"}),
        ([], {"AIMASS_GATEWAY__ENABLED": "off"}),
    ],
    ids=["flag", "setting", "gateway-off"],
)
def test_an_open_server_beyond_loopback_starts_when_told_so(
    home: Path, args: list[str], settings: dict[str, str]
) -> None:
    answer = _serves(home, "--host", "0.0.0.0", "-m", "iris", *args, **settings)
    assert answer.status_code == 200, answer.text


def test_a_server_beyond_loopback_with_a_key_starts_and_needs_it(
    tmp_path: Path, home: Path
) -> None:
    keyed = tmp_path / "home"
    registry = Registry.from_settings(Settings(home=keyed))
    try:
        clf, x = iris_classifier()
        registry.register(clf, "iris", sample_input=x[:2])
        KeyStore(registry.database).create(name="ops", role=Role.INVOKER, created_by="test")
    finally:
        registry.close()
    answer = _serves(keyed, "--host", "0.0.0.0", "-m", "iris")
    assert answer.status_code == 401, answer.text


@pytest.mark.parametrize(
    ("args", "settings", "named"),
    [
        (
            ["serve"],
            {"AIMASS_SERVING__MAX_BATCH_SIZE": "abc"},
            "serving.max_batch_size (AIMASS_SERVING__MAX_BATCH_SIZE) = 'abc'",
        ),
        (["serve", "--port", "70000"], {}, "server.port (AIMASS_SERVER__PORT) = 70000"),
        (["serve", "--port", "-1"], {}, "server.port (AIMASS_SERVER__PORT) = -1"),
        (["serve", "--workers", "0"], {}, "server.workers (AIMASS_SERVER__WORKERS) = 0"),
        (["models", "list"], {"AIMASS_SERVER__PORT": "eighty"}, "= 'eighty'"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    home: Path, args: list[str], settings: dict[str, str], named: str
) -> None:
    done = _run(home, *args, **settings)
    assert done.returncode == 1
    message = " ".join(done.stderr.split())
    assert message.startswith("error: invalid setting "), done.stderr
    assert named in message


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("server: [1\n", "is not readable YAML: expected ',' or ']'"),
        ("- 1\n", "expected a mapping of settings"),
        ("server:\n  prot: 1\n", "unknown setting server.prot (AIMASS_SERVER__PROT)"),
        ("serving:\n  max_batch_size: many\n", "serving.max_batch_size"),
    ],
    ids=["not-yaml", "not-a-mapping", "unknown-key", "wrong-type"],
)
def test_a_bad_config_file_is_one_line_naming_it(
    home: Path, tmp_path: Path, text: str, named: str
) -> None:
    config = tmp_path / "aimass.yaml"
    config.write_text(text)
    for args in (["--config", str(config), "serve"], ["serve", "--config", str(config)]):
        done = _run(home, *args)
        assert done.returncode == 1
        message = " ".join(done.stderr.split())
        assert message.startswith("error: "), done.stderr
        assert named in message and str(config) in message
