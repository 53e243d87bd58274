"""The JSON schemas of ``/v1/deployments``: what a change's body may be, what an answer holds.

Weights are percentages (``12.5``), as the CLI writes them; a spec stores
them in tenths of a percent. Rules no schema can state are the endpoint's
to check (a 400 naming them): weights in steps of 0.1, a split's summing to
100, each of its references once.
"""

from __future__ import annotations

from typing import Any

from aimass.contract.reference import NAME_PATTERN
from aimass.http.routes import Param

__all__ = ["NAME", "SCHEMAS"]

NAME = Param.string("name", pattern=NAME_PATTERN, description="the deployment's name")
"""The deployment a path names."""

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_TARGET_REF = {
    "type": "string",
    "pattern": f"^{_NAME}(:[0-9]{{1,10}}|@{_NAME})$",
    "description": "an exact version (iris:3) or an alias (iris@production), never a bare name",
}
_PERCENT = {"type": "number", "minimum": 0, "maximum": 100}
_OPEN_PERCENT = {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 100}
_SECONDS = {"type": "number", "exclusiveMinimum": 0}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_GUARD = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "max_error_rate": {
            "type": ["number", "null"],
            "minimum": 0,
            "maximum": 1,
            "description": "trip when the canary's error rate passes this (0.02 = 2%)",
        },
        "max_p99_ratio": {
            "type": ["number", "null"],
            "exclusiveMinimum": 0,
            "description": "trip when the canary's p99 passes this many times the stable p99",
        },
        "window_s": {**_SECONDS, "description": "the guard judges this recent stretch"},
        "min_requests": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
    },
}

_SPEC_PROPERTIES: dict[str, Any] = {
    "targets": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["ref", "weight"],
            "properties": {"ref": {"type": "string"}, "weight": {"type": "number"}},
        },
    },
    "shadows": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["ref", "sample"],
            "properties": {"ref": {"type": "string"}, "sample": {"type": "number"}},
        },
    },
    "sticky": {"type": ["string", "null"]},
    "canary": {
        "oneOf": [
            {"type": "null"},
            {
                "type": "object",
                "required": ["ref", "guard", "progression", "since"],
                "properties": {
                    "ref": {"type": "string"},
                    "guard": {"type": "object"},
                    "progression": {"type": ["object", "null"]},
                    "since": {"type": "number"},
                },
            },
        ]
    },
}

_DEPLOYMENT: dict[str, Any] = {
    "type": "object",
    "required": ["name", "targets", "shadows", "sticky", "canary", "revision"],
    "properties": {
        "name": {"type": "string"},
        **_SPEC_PROPERTIES,
        "revision": {"type": "integer"},
        "created_at": {"type": "string"},
        "created_by": {"type": "string"},
        "updated_at": {"type": "string"},
        "updated_by": {"type": "string"},
    },
}

SCHEMAS: dict[str, Any] = {
    "Deployment": _DEPLOYMENT,
    "DeploymentList": {
        "type": "object",
        "required": ["deployments"],
        "properties": {"deployments": {"type": "array", "items": _ref("Deployment")}},
    },
    "DeploymentShown": {
        **_DEPLOYMENT,
        "required": [*_DEPLOYMENT["required"], "window_s", "stats", "status"],
        "properties": {
            **_DEPLOYMENT["properties"],
            "window_s": {"type": "number"},
            "stats": {
                "type": "object",
                "description": "per version (ref): role, requests, errors, error_rate, p50_ms, "
                "p99_ms, and a shadow's comparison with the live answers, from every server",
                "additionalProperties": {"type": "object"},
            },
            "status": {
                "type": ["object", "null"],
                "description": "this server's convergence on the deployment (null: not followed)",
            },
        },
    },
    "DeploymentHistory": {
        "type": "object",
        "required": ["events"],
        "properties": {
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "deployment", "at", "by", "kind", "reason"],
                    "properties": {
                        "id": {"type": ["integer", "null"]},
                        "deployment": {"type": "string"},
                        "at": {"type": "string"},
                        "by": {"type": "string"},
                        "kind": {"type": "string"},
                        "reason": {"type": "string"},
                        "before": {"type": ["object", "null"]},
                        "after": {"type": ["object", "null"]},
                    },
                },
            }
        },
    },
    "DeploymentCreate": {
        "type": "object",
        "required": ["name", "ref"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": f"^{_NAME}$"},
            "ref": _TARGET_REF,
            "sticky": {
                "type": ["string", "null"],
                "pattern": r"^(key|header:\s*\S.*)$",
                "description": "keep each caller on one version: header:NAME or key (the API key)",
            },
        },
    },
    "DeploymentSplit": {
        "type": "object",
        "required": ["targets"],
        "additionalProperties": False,
        "properties": {
            "targets": {
                "type": "array",
                "minItems": 1,
                "description": "each reference once; weights in percent, 0.1 steps, summing to 100",
                "items": {
                    "type": "object",
                    "required": ["ref", "weight"],
                    "additionalProperties": False,
                    "properties": {"ref": _TARGET_REF, "weight": _PERCENT},
                },
            }
        },
    },
    "DeploymentCanary": {
        "type": "object",
        "required": ["ref", "weight"],
        "additionalProperties": False,
        "properties": {
            "ref": _TARGET_REF,
            "weight": {**_OPEN_PERCENT, "description": "its share in percent, 0.1 steps"},
            "guard": _GUARD,
            "progression": {
                "type": ["object", "null"],
                "required": ["step", "interval_s"],
                "additionalProperties": False,
                "properties": {
                    "step": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                    "interval_s": _SECONDS,
                    "max_weight": {
                        "type": ["number", "null"],
                        "exclusiveMinimum": 0,
                        "maximum": 100,
                    },
                },
            },
        },
    },
    "DeploymentShadow": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "ref": {**_TARGET_REF, "type": ["string", "null"]},
            "sample": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1,
                "description": "the fraction of live requests it gets a copy of (default 1)",
            },
            "off": {"type": "boolean", "description": "true: stop shadowing (ref, or every one)"},
        },
        # Adding a shadow names it; only stopping may leave the reference out.
        "if": {"required": ["off"], "properties": {"off": {"const": True}}},
        "else": {"required": ["ref"], "properties": {"ref": {"type": "string"}}},
    },
}
"""The deployment schemas, by name, for the OpenAPI document's components."""
