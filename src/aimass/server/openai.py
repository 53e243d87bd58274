"""The OpenAI-compatible adapter: ``GET /v1/models`` and ``POST /v1/embeddings``.

Embeddings are routed to models whose task is ``embedding``: the text goes to
the signature's BYTES input and the answer comes from its ``embedding`` output
(or its first). ``encoding_format`` may be ``float`` or ``base64`` (little-endian
float32, what the ``openai`` client asks for by default).

``usage`` counts whitespace-separated words, not tokenizer tokens: the engine
serves a model's tensors, not its tokenizer, so the real token count is not
reachable from here. The number is an estimate and is documented as one.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response

from aimass.codecs import RequestLimits
from aimass.contract.reference import REFERENCE_PATTERN
from aimass.contract.request import InferRequest, RequestedOutput
from aimass.contract.runtime import Capability, embedding_tensors
from aimass.errors import AimassError, ErrorCode
from aimass.http.body import VERSION_HEADER, read_json_object, success_response
from aimass.http.caller import caller_of
from aimass.http.errors import Protocol, request_id
from aimass.http.routes import Answer, Body, Param, Params, Route, json_content
from aimass.registry.records import ModelInfo
from aimass.roles import Role
from aimass.server.disconnect import DisconnectWatch
from aimass.serving.engine import Engine
from aimass.settings import ServerSettings

__all__ = ["SCHEMAS", "OpenAIRoutes"]

_FORMATS = ("float", "base64")

_MODEL = {
    "type": "object",
    "required": ["id", "object", "created", "owned_by"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "model"},
        "created": {"type": "integer"},
        "owned_by": {"type": "string"},
    },
}

SCHEMAS: dict[str, Any] = {
    "Model": _MODEL,
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
        },
    },
    "EmbeddingRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": {"type": "string", "pattern": REFERENCE_PATTERN},
            "input": {
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1},
                ]
            },
            "encoding_format": {"type": "string", "enum": list(_FORMATS)},
            "dimensions": {"type": ["integer", "null"]},
            "user": {"type": "string"},
        },
    },
    "EmbeddingResponse": {
        "type": "object",
        "required": ["object", "data", "model", "usage"],
        "properties": {
            "object": {"const": "list"},
            "model": {"type": "string"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["object", "index", "embedding"],
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
                "required": ["prompt_tokens", "total_tokens"],
                "properties": {
                    "prompt_tokens": {"type": "integer"},
                    "total_tokens": {"type": "integer"},
                },
            },
        },
    },
}
"""The OpenAI-compatible API's component schemas, by name."""


def _invalid(message: str, param: str, code: ErrorCode = ErrorCode.INVALID_INPUT) -> AimassError:
    return AimassError(code, message, param=param)


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, list) and value and all(isinstance(v, int | list) for v in value):
        raise _invalid(
            "token arrays are not supported; send the text as a string or a list of strings",
            "input",
            ErrorCode.UNSUPPORTED,
        )
    raise _invalid("'input' must be a string or a non-empty list of strings", "input")


def _model_entry(model: ModelInfo) -> dict[str, Any]:
    return {
        "id": model.name,
        "object": "model",
        "created": int(model.created_at.timestamp()),
        "owned_by": model.created_by,
    }


class OpenAIRoutes:
    """The OpenAI-compatible endpoints, bound to one engine."""

    def __init__(self, engine: Engine, settings: ServerSettings, limits: RequestLimits) -> None:
        self.engine = engine
        self.settings = settings
        self.limits = limits
        self._disconnects = DisconnectWatch()

    def routes(self) -> list[Route]:
        """The OpenAI-compatible endpoints, declared."""
        common: dict[str, Any] = {"role": Role.INVOKER, "protocol": Protocol.OPENAI}
        return [
            Route(
                "GET",
                "/v1/models",
                "listModelsOpenAI",
                "List models (OpenAI)",
                self.list_models,
                answers=(Answer(200, "every model", json_content("ModelList")),),
                listing=lambda doc, keep: {
                    **doc,
                    "data": [m for m in doc["data"] if keep(m["id"])],
                },
                **common,
            ),
            Route(
                "GET",
                "/v1/models/{model}",
                "retrieveModelOpenAI",
                "Retrieve a model (OpenAI)",
                self.get_model,
                params=(Param.string("model", pattern=REFERENCE_PATTERN),),
                answers=(Answer(200, "the model", json_content("Model")),),
                errors=(ErrorCode.NOT_FOUND,),
                model="model",
                **common,
            ),
            Route(
                "POST",
                "/v1/embeddings",
                "createEmbeddings",
                "Create embeddings (OpenAI)",
                self.embeddings,
                body=Body(json_content("EmbeddingRequest")),
                answers=(Answer(200, "one embedding per text", json_content("EmbeddingResponse")),),
                errors=(
                    ErrorCode.NOT_FOUND,
                    ErrorCode.UNSUPPORTED,
                    ErrorCode.OVERLOADED,
                    ErrorCode.NOT_READY,
                ),
                model_in_body=True,
                **common,
            ),
        ]

    async def list_models(self, request: Request, params: Params) -> Response:
        """``GET /v1/models``: every registered model."""
        models = await self.engine.models()
        document = {"object": "list", "data": [_model_entry(m) for m in models]}
        return success_response(request, _dumps(document), gzip_min_bytes=self._gzip)

    async def get_model(self, request: Request, params: Params) -> Response:
        """``GET /v1/models/{model}``: one model; 404 if there is none."""
        info = await self.engine.metadata(params["model"])
        model = await self.engine.model(info.model)
        return success_response(request, _dumps(_model_entry(model)), gzip_min_bytes=self._gzip)

    async def embeddings(self, request: Request, params: Params) -> Response:
        """``POST /v1/embeddings``: one embedding per input text, float or base64."""
        body = await read_json_object(request, self.settings.max_body_bytes)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _invalid("'model' must be the name of an embedding model", "model")
        texts = _texts(body.get("input"))
        self.limits.check_texts(texts)
        if not isinstance(body.get("user", ""), str):
            raise _invalid("'user' must be a string", "user")
        encoding = body.get("encoding_format", "float")
        if encoding not in _FORMATS:
            raise _invalid(
                f"'encoding_format' must be one of {list(_FORMATS)}, got {encoding!r}",
                "encoding_format",
            )
        info = await self.engine.metadata(model)
        self.engine.require(info, Capability.EMBED, model)
        text_input, output = embedding_tensors(info.manifest.signature)
        dimensions = body.get("dimensions")
        infer = InferRequest(
            model,
            {text_input: np.array(texts, dtype=object)},
            outputs=(RequestedOutput(output),),
            request_id=request_id(request.scope["headers"]),
            caller=caller_of(request.scope),
            capability=Capability.EMBED,
            headers=request.scope["headers"],
        )
        result = await self._disconnects.watch(request.receive, self.engine.infer(infer))
        vectors = np.asarray(result.outputs[output], dtype="<f4")
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise AimassError(
                ErrorCode.INTERNAL,
                f"model {info.ref} returned embeddings of shape {list(vectors.shape)} "
                f"for {len(texts)} texts",
            )
        if dimensions is not None and dimensions != vectors.shape[1]:
            raise _invalid(
                f"model '{model}' makes {vectors.shape[1]}-dimensional embeddings; "
                f"'dimensions' {dimensions!r} is not supported",
                "dimensions",
                ErrorCode.UNSUPPORTED,
            )
        words = sum(len(text.split()) for text in texts)
        document = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": _encode(row, encoding)}
                for i, row in enumerate(vectors)
            ],
            "model": model,
            "usage": {"prompt_tokens": words, "total_tokens": words},
        }
        answered = {VERSION_HEADER.decode(): f"{result.model_name}:{result.model_version}"}
        return success_response(
            request, _dumps(document), headers=answered, gzip_min_bytes=self._gzip
        )

    @property
    def _gzip(self) -> int:
        return self.settings.gzip_min_bytes


def _encode(row: np.ndarray[Any, Any], encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(row.tobytes()).decode("ascii")
    return row


def _dumps(document: Any) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
