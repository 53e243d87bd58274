"""Read-only HTTP routes over training, tuning and evaluation runs.

``GET /v1/runs`` lists runs, newest first (``?model=``, ``?kind=``,
``?status=``, ``?limit=``); ``GET /v1/runs/{id}`` is one run, with its
progress and current step while it is running, so a long training job can be
followed from anywhere that reaches the server. Errors use the ``/v1``
body shape (``{"error": {"message", "type", "param", "code"}}``).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aimass.errors import AimassError, ErrorCode
from aimass.lifecycle.runs import RunStore
from aimass.registry import Registry
from aimass.server.body import json_response
from aimass.server.errors import Protocol, guarded

__all__ = ["RunRoutes"]

_MAX_LIMIT = 1000
_KINDS = ("train", "tune", "evaluate")
_STATUSES = ("running", "succeeded", "failed")


def _number(raw: str, what: str, *, low: int, high: int | None = None) -> int:
    if not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"{what} must be a whole number {bound}, not '{raw}'",
            field=what,
        )
    return int(raw)


def _choice(raw: str | None, what: str, allowed: tuple[str, ...]) -> str | None:
    if raw is not None and raw not in allowed:
        raise AimassError(
            ErrorCode.INVALID_INPUT, f"{what} must be one of {', '.join(allowed)}", field=what
        )
    return raw


class RunRoutes:
    """The run endpoints, reading the runs table of one registry's database."""

    def __init__(self, registry: Registry) -> None:
        self.runs = RunStore.of(registry)

    def routes(self) -> list[Route]:
        """Starlette routes for ``/v1/runs`` and ``/v1/runs/{id}``."""
        return [
            Route("/v1/runs", guarded(self.list_runs, Protocol.OPENAI), methods=["GET"]),
            Route("/v1/runs/{id}", guarded(self.get_run, Protocol.OPENAI), methods=["GET"]),
        ]

    async def list_runs(self, request: Request) -> Response:
        """``GET /v1/runs``: runs, newest first."""
        query = request.query_params
        unknown = sorted(set(query) - {"model", "kind", "status", "limit"})
        if unknown:
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"unknown query parameter(s) {unknown}; use model, kind, status, limit",
                field=unknown[0],
            )
        limit = _number(query.get("limit", "50"), "limit", low=1, high=_MAX_LIMIT)
        found = await run_in_threadpool(
            self.runs.list,
            model=query.get("model"),
            kind=_choice(query.get("kind"), "kind", _KINDS),
            status=_choice(query.get("status"), "status", _STATUSES),
            limit=limit,
        )
        return json_response({"runs": [r.model_dump(mode="json") for r in found]})

    async def get_run(self, request: Request) -> Response:
        """``GET /v1/runs/{id}``: one run, as it is now."""
        run_id = _number(request.path_params["id"], "id", low=1)
        run = await run_in_threadpool(self.runs.get, run_id)
        return json_response(run.model_dump(mode="json"))
