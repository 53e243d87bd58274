"""Numbers past what a registry database holds: never a 500, on SQLite and PostgreSQL.

SQLite refuses to compare an integer from 2**63, PostgreSQL's INTEGER from
2**31; either used to surface as a 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aimass.app import create_app
from aimass.registry import Registry
from aimass.settings import RegistrySettings, Settings
from aimass.testing.models import iris_classifier
from aimass.testing.server import serve_in_thread

BEYOND_ANY_DATABASE = [2**31, 2**63, 10**20]
IRIS_ROW = {
    "inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    registry_settings = RegistrySettings()
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_database")()
        registry_settings = RegistrySettings(database_url=url)
    home: Path = tmp_path_factory.mktemp(f"numbers-{request.param}")
    settings = Settings(home=home, registry=registry_settings)
    registry = Registry.from_settings(settings)
    clf, x = iris_classifier()
    registry.register(clf, "iris", sample_input=x[:2], task="classification")
    with (
        serve_in_thread(create_app(settings, registry=registry)) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        yield http
    registry.close()


@pytest.mark.parametrize("number", BEYOND_ANY_DATABASE)
def test_a_version_number_no_database_holds_is_404(client: httpx.Client, number: int) -> None:
    answers = {
        "version metadata": client.get(f"/v2/models/iris/versions/{number}"),
        "version ready": client.get(f"/v2/models/iris/versions/{number}/ready"),
        "version infer": client.post(f"/v2/models/iris/versions/{number}/infer", json=IRIS_ROW),
        "reference metadata": client.get(f"/v2/models/iris:{number}"),
        "reference ready": client.get(f"/v2/models/iris:{number}/ready"),
        "reference infer": client.post(f"/v2/models/iris:{number}/infer", json=IRIS_ROW),
    }
    for what, answer in answers.items():
        assert answer.status_code == 404, (what, answer.text)
        assert "has no version" in answer.json()["error"], what
    assert client.get("/v2/models/iris:1").status_code == 200


@pytest.mark.parametrize("number", BEYOND_ANY_DATABASE)
def test_a_run_id_no_database_holds_is_outside_the_declared_range(
    client: httpx.Client, number: int
) -> None:
    # The runs route's rule (as for 'abc'): a 400 naming the range its schema declares.
    answer = client.get(f"/v1/runs/{number}")
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["message"] == (
        f"path parameter id must be a whole number from 1 to 2147483647, not '{number}'"
    )
