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
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aimass.codecs import parse_json_object
from aimass.errors import AimassError, ErrorCode
from aimass.gateway.limits import RequestLimits
from aimass.registry import Datatype, ModelInfo, Registry, Task, VersionInfo
from aimass.server.body import read_body, success_response
from aimass.server.errors import Protocol, guarded
from aimass.serving import Engine
from aimass.settings import ServerSettings

__all__ = ["OpenAIRoutes"]

_FORMATS = ("float", "base64")


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
    """The OpenAI-compatible endpoints, bound to one engine and registry."""

    def __init__(
        self,
        engine: Engine,
        registry: Registry,
        settings: ServerSettings,
        *,
        limits: RequestLimits | None = None,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.settings = settings
        self.limits = limits

    def routes(self) -> list[Route]:
        """Starlette routes for the OpenAI-compatible endpoints."""
        return [
            Route("/v1/models", guarded(self.list_models, Protocol.OPENAI), methods=["GET"]),
            Route("/v1/models/{model}", guarded(self.get_model, Protocol.OPENAI), methods=["GET"]),
            Route("/v1/embeddings", guarded(self.embeddings, Protocol.OPENAI), methods=["POST"]),
        ]

    async def list_models(self, request: Request) -> Response:
        """``GET /v1/models``: every registered model."""
        models = await run_in_threadpool(self.registry.list_models)
        document = {"object": "list", "data": [_model_entry(m) for m in models]}
        return success_response(request, _dumps(document), gzip_min_bytes=self._gzip)

    async def get_model(self, request: Request) -> Response:
        """``GET /v1/models/{model}``: one model; 404 if there is none."""
        info = await self.engine.metadata(request.path_params["model"])
        model = await run_in_threadpool(self.registry.get_model, info.model)
        return success_response(request, _dumps(_model_entry(model)), gzip_min_bytes=self._gzip)

    async def embeddings(self, request: Request) -> Response:
        """``POST /v1/embeddings``: one embedding per input text, float or base64."""
        body = parse_json_object(await read_body(request, self.settings.max_body_bytes))
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _invalid("'model' must be the name of an embedding model", "model")
        texts = _texts(body.get("input"))
        if self.limits is not None:
            self.limits.check_texts(texts)
        encoding = body.get("encoding_format", "float")
        if encoding not in _FORMATS:
            raise _invalid(
                f"'encoding_format' must be one of {list(_FORMATS)}, got {encoding!r}",
                "encoding_format",
            )
        info = await self.engine.metadata(model)
        text_input, output = _embedding_tensors(info, model)
        dimensions = body.get("dimensions")
        result = await self.engine.infer(
            model, None, {text_input: np.array(texts, dtype=object)}, outputs=[output]
        )
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
        return success_response(request, _dumps(document), gzip_min_bytes=self._gzip)

    @property
    def _gzip(self) -> int:
        return self.settings.gzip_min_bytes


def _embedding_tensors(info: VersionInfo, requested: str) -> tuple[str, str]:
    manifest = info.manifest
    if manifest.task is not Task.EMBEDDING:
        raise _invalid(
            f"model '{requested}' is not an embedding model (its task is {manifest.task.value})",
            "model",
        )
    signature = manifest.signature
    texts = [s.name for s in signature.inputs if s.datatype is Datatype.BYTES]
    if len(signature.inputs) != 1 or not texts or not signature.outputs:
        raise _invalid(
            f"model '{requested}' does not take a single text input and return embeddings",
            "model",
        )
    names = [s.name for s in signature.outputs]
    return texts[0], "embedding" if "embedding" in names else names[0]


def _encode(row: np.ndarray[Any, Any], encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(row.tobytes()).decode("ascii")
    return row


def _dumps(document: Any) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
