"""Schemathesis against /openapi.json with a valid admin key: no request gets a 5xx."""

from __future__ import annotations

import schemathesis
from gatewaytest import ServeFactory
from schemathesis.core.result import Err

from aimass.roles import Role

EXAMPLES = 12
"""Examples per operation: enough to reach every branch of the parsers, bounded in time."""


def test_fuzzing_the_documented_api_finds_no_server_errors(serve: ServeFactory) -> None:
    from hypothesis import HealthCheck, given, settings

    with serve() as served:
        headers = {"authorization": f"Bearer {served.key(Role.ADMIN)}"}
        schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json", headers=headers)
        failures: list[str] = []
        statuses: list[int] = []
        operations = 0
        for result in schema.get_all_operations():
            assert not isinstance(result, Err), result
            operation = result.ok()
            operations += 1

            @given(case=operation.as_strategy())
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def call(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
                response = case.call(base_url=served.url, headers=headers, timeout=30)
                statuses.append(response.status_code)
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} -> {response.status_code}: "
                        f"{response.text[:200]}"
                    )

            call()
    assert operations >= 20
    assert len(statuses) >= 3 * operations  # the examples really were sent
    assert {200, 400} <= set(statuses)  # valid and invalid requests among them
    assert failures == []
