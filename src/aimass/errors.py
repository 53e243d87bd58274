"""One catalog of errors, mapped once to every protocol.

Every failure aimass reports to a user is an :class:`AimassError` carrying an
:class:`ErrorCode`. The :data:`CATALOG` says, for each code, the HTTP status,
the OpenAI error type and whether a retry may succeed; the HTTP adapters and
the CLI read it and never decide a status on their own. This module imports no
web framework so the registry, runtimes and CLI can raise these freely.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["CATALOG", "AimassError", "ErrorCode", "ErrorSpec"]


class ErrorCode(StrEnum):
    """What went wrong, independent of the transport that reports it."""

    INVALID_INPUT = "invalid_input"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    CONFLICT = "conflict"
    INTEGRITY = "integrity"
    UNSUPPORTED = "unsupported"
    MISSING_EXTRA = "missing_extra"
    UNSAFE_FORMAT = "unsafe_format"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    NOT_READY = "not_ready"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    TIMEOUT = "timeout"
    INTERNAL = "internal"


@dataclass(frozen=True)
class ErrorSpec:
    """How one code is reported: HTTP status, OpenAI error type, retryability.

    ``public`` is what a client is told for a server-side failure whose own
    message names the server's insides (a store's path, a missing package);
    the message itself goes to the log. None: the message is fit to show.
    """

    http_status: int
    openai_type: str
    retryable: bool
    public: str | None = None


CATALOG: dict[ErrorCode, ErrorSpec] = {
    ErrorCode.INVALID_INPUT: ErrorSpec(400, "invalid_request_error", False),
    ErrorCode.NOT_FOUND: ErrorSpec(404, "not_found_error", False),
    ErrorCode.ALREADY_EXISTS: ErrorSpec(409, "invalid_request_error", False),
    ErrorCode.CONFLICT: ErrorSpec(409, "invalid_request_error", False),
    # A corrupted artifact is the server's problem, not the client's.
    ErrorCode.INTEGRITY: ErrorSpec(
        500, "server_error", False, "a model artifact failed its integrity check"
    ),
    ErrorCode.UNSUPPORTED: ErrorSpec(400, "invalid_request_error", False),
    ErrorCode.MISSING_EXTRA: ErrorSpec(
        501, "server_error", False, "this model needs a framework the server does not have"
    ),
    ErrorCode.UNSAFE_FORMAT: ErrorSpec(403, "permission_error", False),
    ErrorCode.UNAUTHENTICATED: ErrorSpec(401, "authentication_error", False),
    ErrorCode.PERMISSION_DENIED: ErrorSpec(403, "permission_error", False),
    ErrorCode.RATE_LIMITED: ErrorSpec(429, "rate_limit_error", True),
    ErrorCode.OVERLOADED: ErrorSpec(503, "server_error", True),
    ErrorCode.NOT_READY: ErrorSpec(503, "server_error", True),
    ErrorCode.PAYLOAD_TOO_LARGE: ErrorSpec(413, "invalid_request_error", False),
    ErrorCode.METHOD_NOT_ALLOWED: ErrorSpec(405, "invalid_request_error", False),
    ErrorCode.TIMEOUT: ErrorSpec(504, "server_error", True),
    ErrorCode.INTERNAL: ErrorSpec(500, "server_error", False, "internal server error"),
}


class AimassError(Exception):
    """An error with a code from the catalog and a message safe to show a user.

    ``details`` carries structured context (the field at fault, what was
    expected) for logs and JSON bodies; it must never hold secrets.
    """

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def spec(self) -> ErrorSpec:
        """The catalog entry for this error's code."""
        return CATALOG[self.code]

    @property
    def public_message(self) -> str:
        """What a remote client may be told: the catalog's public text, else the message."""
        public = CATALOG[self.code].public
        return self.message if public is None else public

    def copy(self) -> AimassError:
        """The same error as a new exception, with the same cause.

        For the many waiters of one failure (a batch, a load): raising one
        exception object in many tasks would grow one shared traceback.
        """
        fresh = AimassError(self.code, self.message, **self.details)
        fresh.__cause__ = self.__cause__
        return fresh

    def __repr__(self) -> str:
        return f"AimassError({self.code.value!r}, {self.message!r})"
