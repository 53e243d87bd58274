"""The OpenAPI 3.1 document of the server, built by hand.

The routes parse raw bytes with orjson rather than through request models
(validation by model would cost more than the model call for small models),
so the schemas here describe the wire format for readers and client
generators; :mod:`aimass.codecs` is what enforces it.
"""

from __future__ import annotations

from typing import Any

from aimass.registry import Datatype

__all__ = ["openapi_document"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(kind: str, *statuses: int) -> dict[str, Any]:
    reasons = {
        400: "malformed request, wrong input name, shape, datatype or byte length",
        404: "unknown model or version",
        405: "wrong method",
        413: "body larger than the server's limit",
        503: "not ready or overloaded (see Retry-After)",
        504: "the model did not answer in time",
    }
    return {str(s): _json(_ref(kind), reasons[s]) for s in statuses}


_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "model name, or a reference: name:version, name@alias",
}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}

_TENSOR_FIELDS: dict[str, Any] = {
    "name": {"type": "string"},
    "datatype": _ref("Datatype"),
    "shape": {"type": "array", "items": {"type": "integer"}},
}
_TENSOR_META = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": _TENSOR_FIELDS,
}

_SCHEMAS: dict[str, Any] = {
    "Datatype": {"type": "string", "enum": [d.value for d in Datatype]},
    "OipError": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "OpenAIError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
    "Parameters": {"type": "object", "additionalProperties": True},
    "TensorMetadata": _TENSOR_META,
    "RequestInput": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "description": "Either `data` (flat or nested, row-major; BYTES as strings) or "
        "`parameters.binary_data_size` with the raw bytes after the JSON header.",
        "properties": {
            **_TENSOR_FIELDS,
            "parameters": _ref("Parameters"),
            "data": {"type": "array", "items": {}},
        },
    },
    "RequestOutput": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string"},
            "parameters": {
                "type": "object",
                "properties": {"binary_data": {"type": "boolean"}},
            },
        },
    },
    "InferenceRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {
                "type": "object",
                "properties": {
                    "binary_data_output": {"type": "boolean"},
                    "timeout": {"type": "integer", "description": "microseconds"},
                },
            },
            "inputs": {"type": "array", "items": _ref("RequestInput")},
            "outputs": {"type": "array", "items": _ref("RequestOutput")},
        },
    },
    "ResponseOutput": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            **_TENSOR_FIELDS,
            "parameters": _ref("Parameters"),
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
    "ServerMetadata": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "ModelMetadata": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _ref("TensorMetadata")},
            "outputs": {"type": "array", "items": _ref("TensorMetadata")},
        },
    },
    "Ready": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    "Live": {"type": "object", "properties": {"live": {"type": "boolean"}}},
    "RepositoryIndexRequest": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    "RepositoryIndex": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "state": {"type": "string"},
                "reason": {"type": "string"},
            },
        },
    },
    "EmbeddingRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": {"type": "string"},
            "input": {
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1},
                ]
            },
            "encoding_format": {"type": "string", "enum": ["float", "base64"]},
            "dimensions": {"type": "integer"},
            "user": {"type": "string"},
        },
    },
    "EmbeddingResponse": {
        "type": "object",
        "properties": {
            "object": {"const": "list"},
            "model": {"type": "string"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "object": {"const": "embedding"},
                        "index": {"type": "integer"},
                        "embedding": {
                            "oneOf": [
                                {"type": "array", "items": {"type": "number"}},
                                {"type": "string", "description": "base64 of float32 LE"},
                            ]
                        },
                    },
                },
            },
            "usage": {
                "type": "object",
                "description": "whitespace-separated words, an estimate of tokens",
                "properties": {
                    "prompt_tokens": {"type": "integer"},
                    "total_tokens": {"type": "integer"},
                },
            },
        },
    },
    "ModelList": {
        "type": "object",
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {}}},
    },
}


def _get(summary: str, schema: str, *errors: int, params: list[Any] | None = None) -> Any:
    return {
        "get": {
            "summary": summary,
            "parameters": params or [],
            "responses": {"200": _json(_ref(schema), "OK"), **_errors("OipError", *errors)},
        }
    }


def _infer(params: list[Any]) -> Any:
    binary = {
        "description": "JSON header of Inference-Header-Content-Length bytes, then raw tensors",
        "schema": {"type": "string", "format": "binary"},
    }
    return {
        "post": {
            "summary": "Run inference (JSON or binary tensor data)",
            "parameters": [
                *params,
                {
                    "name": "Inference-Header-Content-Length",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "integer"},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _ref("InferenceRequest")},
                    "application/octet-stream": binary,
                },
            },
            "responses": {
                "200": {
                    "description": "outputs",
                    "content": {
                        "application/json": {"schema": _ref("InferenceResponse")},
                        "application/octet-stream": binary,
                    },
                },
                **_errors("OipError", 400, 404, 413, 503, 504),
            },
        }
    }


def _post(
    summary: str,
    request: str | None,
    response: str,
    kind: str,
    *errors: int,
    params: list[Any] | None = None,
) -> Any:
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": params or [],
        "responses": {"200": _json(_ref(response), "OK"), **_errors(kind, *errors)},
    }
    if request is not None:
        operation["requestBody"] = {
            "required": kind == "OpenAIError",
            "content": {"application/json": {"schema": _ref(request)}},
        }
    return {"post": operation}


_RUNS = {"type": "array", "items": {"type": "object"}}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def openapi_document(version: str) -> dict[str, Any]:
    """The OpenAPI document for a server of this ``version``."""
    model, both = [_NAME], [_NAME, _VERSION]
    loaded = {"type": "object", "properties": {"name": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "aimass", "version": version},
        "paths": {
            "/v2": _get("Server metadata", "ServerMetadata"),
            "/v2/health/live": _get("Liveness", "Live"),
            "/v2/health/ready": _get("Readiness", "Ready", 503),
            "/v2/models/{name}": _get("Model metadata", "ModelMetadata", 404, params=model),
            "/v2/models/{name}/versions/{version}": _get(
                "Model version metadata", "ModelMetadata", 404, params=both
            ),
            "/v2/models/{name}/ready": _get("Model readiness", "Ready", 404, 503, params=model),
            "/v2/models/{name}/versions/{version}/ready": _get(
                "Model version readiness", "Ready", 404, 503, params=both
            ),
            "/v2/models/{name}/infer": _infer(model),
            "/v2/models/{name}/versions/{version}/infer": _infer(both),
            "/v2/repository/index": _post(
                "Repository index", "RepositoryIndexRequest", "RepositoryIndex", "OipError", 400
            ),
            "/v2/repository/models/{name}/load": _post(
                "Load a model", None, "Loaded", "OipError", 404, params=model
            ),
            "/v2/repository/models/{name}/unload": _post(
                "Unload a model", None, "Loaded", "OipError", 404, params=model
            ),
            "/v1/models": {
                "get": {
                    "summary": "List models (OpenAI)",
                    "responses": {"200": _json(_ref("ModelList"), "OK")},
                }
            },
            "/v1/models/{model}": {
                "get": {
                    "summary": "Retrieve a model (OpenAI)",
                    "parameters": [{**_NAME, "name": "model"}],
                    "responses": {"200": _json({}, "OK"), **_errors("OpenAIError", 404)},
                }
            },
            "/v1/embeddings": _post(
                "Create embeddings (OpenAI)",
                "EmbeddingRequest",
                "EmbeddingResponse",
                "OpenAIError",
                400,
                404,
                413,
                503,
            ),
            "/v1/runs": {
                "get": {
                    "summary": "Training, tuning and evaluation runs, newest first",
                    "parameters": [
                        _query("model", {"type": "string"}),
                        _query("kind", {"enum": ["train", "tune", "evaluate"]}),
                        _query("status", {"enum": ["running", "succeeded", "failed"]}),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                    ],
                    "responses": {
                        "200": _json({"type": "object", "properties": {"runs": _RUNS}}, "OK"),
                        **_errors("OpenAIError", 400),
                    },
                }
            },
            "/v1/runs/{id}": {
                "get": {
                    "summary": "One run, with its progress while it runs",
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer"},
                        }
                    ],
                    "responses": {
                        "200": _json({"type": "object"}, "OK"),
                        **_errors("OpenAIError", 400, 404),
                    },
                }
            },
        },
        "components": {"schemas": {**_SCHEMAS, "Loaded": loaded}},
    }
