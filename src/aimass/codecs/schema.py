"""The OIP wire format as JSON schemas, for ``/openapi.json``: inference, metadata, the repository.

The routes parse raw bytes with orjson (:mod:`aimass.codecs.request`) rather
than through request models, which would cost more than the model call for
small models; these schemas say, for readers and client generators, what that
decoder accepts and what :mod:`aimass.codecs.response` writes. What no schema
can say (``data`` must hold as many elements as ``shape`` multiplies to, of the
datatype's kind) the decoder checks and answers 400 for.
"""

from __future__ import annotations

from typing import Any

from aimass.contract.signature import Datatype

__all__ = ["SCHEMAS"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_SHAPE = {"type": "array", "items": {"type": "integer", "minimum": 0}}
# An input whose bytes follow the JSON header: a non-null binary_data_size.
_BINARY_SIZED = {
    "required": ["parameters"],
    "properties": {
        "parameters": {
            "type": "object",
            "required": ["binary_data_size"],
            "properties": {"binary_data_size": {"type": "integer"}},
        }
    },
}

SCHEMAS: dict[str, Any] = {
    "Datatype": {"type": "string", "enum": [d.value for d in Datatype]},
    "TensorMetadata": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": _ref("Datatype"),
            "shape": {"type": "array", "items": {"type": "integer"}},
            "parameters": {
                "type": "object",
                "properties": {
                    "nullable": {
                        "type": "boolean",
                        "description": "Elements may be missing: null in JSON data",
                    }
                },
            },
        },
    },
    "RequestInput": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "description": "Either `data` (flat or nested, row-major, as many elements as the shape "
        "multiplies to; BYTES as strings; null for a missing value of a nullable input) or "
        "`parameters.binary_data_size` with the raw bytes after the JSON header (a binary BYTES "
        "input lists its missing elements in `parameters.missing`). What the model takes is its "
        "metadata's: GET /v2/models/{name}.",
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "datatype": _ref("Datatype"),
            "shape": _SHAPE,
            "parameters": {
                "type": ["object", "null"],
                "properties": {
                    "binary_data_size": {"type": ["integer", "null"], "minimum": 0},
                    "missing": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                },
            },
            "data": {"type": "array", "items": {}},
        },
        "oneOf": [
            {"required": ["data"], "not": _BINARY_SIZED},
            {**_BINARY_SIZED, "not": {"required": ["data"]}},
        ],
    },
    "RequestOutput": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string"},
            "parameters": {
                "type": ["object", "null"],
                "properties": {"binary_data": {"type": "boolean"}},
                "not": {"required": ["classification"]},
            },
        },
    },
    "InferenceRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": ["string", "null"]},
            "parameters": {
                "type": ["object", "null"],
                "properties": {
                    "binary_data_output": {"type": "boolean"},
                    "timeout": {
                        "type": ["integer", "null"],
                        "minimum": 1,
                        "description": "microseconds",
                    },
                },
            },
            "inputs": {"type": "array", "items": _ref("RequestInput"), "minItems": 1},
            "outputs": {"type": ["array", "null"], "items": _ref("RequestOutput")},
        },
    },
    "ResponseOutput": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": _ref("Datatype"),
            "shape": _SHAPE,
            "parameters": {
                "type": "object",
                "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
            },
            "data": {"type": "array", "items": {}},
        },
    },
    "InferenceResponse": {
        "type": "object",
        "required": ["model_name", "model_version", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": _ref("ResponseOutput")},
        },
    },
    # What the other OIP routes answer.
    "ServerMetadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "ModelMetadata": {
        "type": "object",
        "required": ["name", "versions", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/TensorMetadata"}},
            "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/TensorMetadata"}},
        },
    },
    "Live": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
    "Ready": {
        "type": "object",
        "required": ["ready"],
        "properties": {"ready": {"type": "boolean"}},
    },
    "ModelReady": {
        "type": "object",
        "required": ["name", "ready"],
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
    },
    "RepositoryIndexRequest": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    "RepositoryIndex": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name", "version", "state", "reason"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "state": {"type": "string", "enum": ["READY", "LOADING", "UNAVAILABLE"]},
                "reason": {"type": "string"},
                "overruns": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "calls abandoned because every request in them timed out "
                    "(loaded versions only)",
                },
            },
        },
    },
    "Loaded": {
        "type": "object",
        "required": ["name", "load"],
        "properties": {"name": {"type": "string"}, "load": {"type": "boolean"}},
    },
    "Unloaded": {
        "type": "object",
        "required": ["name", "unload"],
        "properties": {"name": {"type": "string"}, "unload": {"type": "boolean"}},
    },
}
"""The OIP wire format's component schemas, by name."""
