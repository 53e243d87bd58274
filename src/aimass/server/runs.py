"""Read-only HTTP routes over training, tuning and evaluation runs.

``GET /v1/runs`` lists runs, newest first (``?model=``, ``?kind=``,
``?status=``, ``?limit=``); ``GET /v1/runs/{id}`` is one run, with its
progress and current step while it is running, so a long training job can be
followed from anywhere that reaches the server. Errors use the ``/v1``
body shape (``{"error": {"message", "type", "param", "code"}}``).
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from aimass.errors import ErrorCode
from aimass.http.body import json_response
from aimass.http.errors import Protocol
from aimass.http.routes import Answer, Param, Params, Route, json_content
from aimass.lifecycle.runs import KINDS, STATUSES, RunStore
from aimass.roles import Role

__all__ = ["SCHEMAS", "RunRoutes"]

SCHEMAS: dict[str, Any] = {
    "Run": {
        "type": "object",
        "required": ["id", "kind", "status", "model", "version", "progress", "message"],
        "properties": {
            "id": {"type": "integer"},
            "kind": {"type": "string"},
            "status": {"type": "string", "enum": list(STATUSES)},
            "model": {"type": "string"},
            "version": {"type": ["integer", "null"]},
            "progress": {"type": "number"},
            "message": {"type": "string"},
            "params": {"type": "object"},
            "metrics": {"type": "object"},
            "data": {"type": "object"},
            "extra": {"type": "object"},
            "started_at": {"type": "string"},
            "finished_at": {"type": ["string", "null"]},
            "duration_s": {"type": ["number", "null"]},
            "created_by": {"type": "string"},
        },
    },
    "RunList": {
        "type": "object",
        "required": ["runs"],
        "properties": {"runs": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}}},
    },
}


class RunRoutes:
    """The run endpoints, reading the runs table of the product database."""

    def __init__(self, runs: RunStore) -> None:
        self.runs = runs

    def routes(self) -> list[Route]:
        """The run endpoints, declared: operational data, for whoever deploys."""
        common: dict[str, Any] = {"role": Role.DEPLOYER, "protocol": Protocol.OPENAI}
        return [
            Route(
                "GET",
                "/v1/runs",
                "listRuns",
                "Training, tuning and evaluation runs, newest first",
                self.list_runs,
                params=(
                    Param.string("model", "query", description="only this model's runs"),
                    Param.string("kind", "query", choices=KINDS),
                    Param.string("status", "query", choices=STATUSES),
                    Param.integer("limit", "query", low=1, high=1000, description="default 50"),
                ),
                answers=(Answer(200, "runs", json_content("RunList")),),
                **common,
            ),
            Route(
                "GET",
                "/v1/runs/{id}",
                "getRun",
                "One run, with its progress while it runs",
                self.get_run,
                params=(Param.integer("id", low=1),),
                answers=(Answer(200, "the run", json_content("Run")),),
                errors=(ErrorCode.NOT_FOUND,),
                **common,
            ),
        ]

    async def list_runs(self, request: Request, params: Params) -> Response:
        """``GET /v1/runs``: runs, newest first."""
        found = await run_in_threadpool(
            self.runs.list,
            model=params.get("model"),
            kind=params.get("kind"),
            status=params.get("status"),
            limit=params.get("limit", 50),
        )
        return json_response({"runs": [r.model_dump(mode="json") for r in found]})

    async def get_run(self, request: Request, params: Params) -> Response:
        """``GET /v1/runs/{id}``: one run, as it is now."""
        run = await run_in_threadpool(self.runs.get, params["id"])
        return json_response(run.model_dump(mode="json"))
