"""The error catalog is complete and its mapping is pinned."""

from __future__ import annotations

import pytest

from aimass.errors import CATALOG, AimassError, ErrorCode

# The public contract: changing a status here is a breaking change for clients.
PINNED = {
    ErrorCode.INVALID_INPUT: (400, "invalid_request_error", False),
    ErrorCode.NOT_FOUND: (404, "not_found_error", False),
    ErrorCode.ALREADY_EXISTS: (409, "invalid_request_error", False),
    ErrorCode.CONFLICT: (409, "invalid_request_error", False),
    ErrorCode.INTEGRITY: (500, "server_error", False),
    ErrorCode.UNSUPPORTED: (400, "invalid_request_error", False),
    ErrorCode.MISSING_EXTRA: (501, "server_error", False),
    ErrorCode.UNSAFE_FORMAT: (403, "permission_error", False),
    ErrorCode.UNAUTHENTICATED: (401, "authentication_error", False),
    ErrorCode.PERMISSION_DENIED: (403, "permission_error", False),
    ErrorCode.RATE_LIMITED: (429, "rate_limit_error", True),
    ErrorCode.OVERLOADED: (503, "server_error", True),
    ErrorCode.NOT_READY: (503, "server_error", True),
    ErrorCode.PAYLOAD_TOO_LARGE: (413, "invalid_request_error", False),
    ErrorCode.METHOD_NOT_ALLOWED: (405, "invalid_request_error", False),
    ErrorCode.TIMEOUT: (504, "server_error", True),
    ErrorCode.INTERNAL: (500, "server_error", False),
}


def test_every_code_has_a_catalog_entry() -> None:
    assert set(CATALOG) == set(ErrorCode)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_catalog_entry_is_pinned(code: ErrorCode) -> None:
    spec = CATALOG[code]
    assert (spec.http_status, spec.openai_type, spec.retryable) == PINNED[code]


def test_error_carries_code_message_and_details() -> None:
    err = AimassError(ErrorCode.INVALID_INPUT, "bad shape", field="input")
    assert err.spec.http_status == 400
    assert str(err) == "bad shape"
    assert err.details == {"field": "input"}
