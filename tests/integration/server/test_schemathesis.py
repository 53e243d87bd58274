"""Schemathesis, with every check it has, against the server's own ``/openapi.json``.

The ``st run`` command runs all its phases (coverage, fuzzing, stateful) and
all its checks: no 5xx, no status, content type, header or body the document
does not declare, no schema-valid request refused and no schema-violating one
accepted, methods the document does not list answered 405 with ``Allow``. Two
real servers: an open one (no keys yet, so the document declares no key
schemes) and one that requires keys, fuzzed with an admin key.

Two answers are documented and exempted here, each for its reason:

* readiness answers 503 while a model loads: the probe's documented "not
  yet", not a server error;
* an infer or embeddings request the schema allows may still not fit the
  model it names (its input names, shapes, datatypes: GET /v2/models/{name}
  says those, not the document): that 400 is the model's answer;
* a deployment's split or canary the schema allows may still break a rule
  JSON Schema cannot state (weights in 0.1 steps, a split summing to 100,
  each reference once): that 400 names the rule.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aimass.app import create_app
from aimass.gateway.keys import KeyStore
from aimass.registry import Registry
from aimass.roles import Role
from aimass.settings import Settings
from aimass.testing.models import iris_classifier, minilm_path
from aimass.testing.server import serve_in_thread

pytestmark = pytest.mark.slow  # thousands of generated requests

EXAMPLES = 40
"""Test cases per operation and phase: enough for every parser's branches, bounded in time."""

_POSITIVE = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # schemathesis' default
CONFIG = f"""
[[operations]]
include-path-regex = "/ready$"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]

[[operations]]
include-path-regex = "(/infer|/v1/embeddings)$"
checks.positive_data_acceptance.expected-statuses = {json.dumps([*_POSITIVE, "400"])}

[[operations]]
include-path-regex = "^/v1/deployments/.*/(set|canary)$"
checks.positive_data_acceptance.expected-statuses = {json.dumps([*_POSITIVE, "400"])}
"""


def _registry(home: Path, *, embeddings: bool) -> Registry:
    registry = Registry.from_settings(Settings(home=home))
    clf, x = iris_classifier()
    registry.register(clf, "iris", sample_input=x[:2])
    path = minilm_path()
    if embeddings and path is not None:
        registry.register(path, "minilm", runtime="transformers")
    return registry


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    settings = Settings(home=tmp_path / "home")
    registry = _registry(settings.home, embeddings=True)
    try:
        with serve_in_thread(create_app(settings, registry=registry)) as url:
            yield url
    finally:
        registry.close()


def _schemathesis(url: str, work: Path, *args: str) -> dict[str, Any]:
    """``st run`` on the server's document; its JSON report, once it passed."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "schemathesis.toml").write_text(CONFIG, encoding="utf-8")
    report = work / "report.json"
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "1",
        "--workers",
        "1",
        "--no-color",
        "--generation-database",
        "none",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        *args,
    ]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    found: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    return found


def test_an_open_server_meets_every_check_of_its_document(served: str, tmp_path: Path) -> None:
    report = _schemathesis(served, tmp_path / "open")
    assert report["operations"]["tested"] == report["operations"]["total"] >= 22
    assert report["test_cases"]["generated"] >= 1000
    assert report["failures"] == [] and report["errors"] == []


def test_a_server_that_requires_keys_meets_every_check_of_its_document(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    registry = _registry(settings.home, embeddings=False)
    secret = (
        KeyStore(registry.database).create(name="fuzzer", role=Role.ADMIN, created_by="test").secret
    )
    try:
        with serve_in_thread(create_app(settings, registry=registry)) as url:
            report = _schemathesis(
                url,
                tmp_path / "secured",
                "--header",
                f"Authorization: Bearer {secret}",
                # Its stateful phase would revoke the one key it fuzzes with.
                "--exclude-method",
                "DELETE",
            )
    finally:
        registry.close()
    assert report["operations"]["tested"] >= 21
    assert report["test_cases"]["generated"] >= 1000
    assert report["failures"] == [] and report["errors"] == []
