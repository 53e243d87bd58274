"""The Open Inference Protocol (KServe v2) REST adapter over the serving engine.

Health, server and model metadata, model readiness, inference (JSON and
Triton's binary tensor extension) and the model repository extension. A model
name in the path may be a reference (``iris@production``, ``iris:2``); the
engine resolves it. The infer route is the hot path: it parses the raw body
with orjson through :mod:`aimass.codecs`, awaits the engine and writes bytes,
with no schema validation or logging in between.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from aimass.codecs import HEADER_LENGTH, decode_infer_request, encode_infer_response
from aimass.codecs.request import parse_header_length, parse_json_object
from aimass.errors import AimassError, ErrorCode
from aimass.gateway.limits import RequestLimits
from aimass.registry import Registry, TensorSpec, VersionInfo
from aimass.server.body import json_response, read_body, receive_body, send_success
from aimass.server.errors import Protocol, failure_response, guarded, request_id
from aimass.serving import Engine
from aimass.settings import ServerSettings

__all__ = ["EXTENSIONS", "InferEndpoint", "OipRoutes"]

EXTENSIONS = ["binary_tensor_data", "model_repository"]
"""The OIP extensions this server implements, as ``GET /v2`` lists them."""

_MODEL = "/v2/models/{name}"
_VERSION = "/v2/models/{name}/versions/{version}"
_HEADER_LENGTH = HEADER_LENGTH.lower().encode()
_OCTET_STREAM = (b"content-type", b"application/octet-stream")


def _version(params: dict[str, str]) -> int | None:
    raw = params.get("version")
    if raw is None:
        return None
    if not raw.isdigit():
        name = params["name"]
        raise AimassError(ErrorCode.NOT_FOUND, f"model '{name}' has no version '{raw}'")
    return int(raw)


def _timeout(parameters: dict[str, Any]) -> float | None:
    # Triton's (and tritonclient's) request timeout is in microseconds.
    value = parameters.get("timeout")
    if value is None:
        return None
    if type(value) is not int or value <= 0:
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            "parameter 'timeout' must be a positive integer (microseconds)",
            field="timeout",
        )
    return value / 1_000_000


class OipRoutes:
    """The OIP endpoints, bound to one engine and registry."""

    def __init__(
        self,
        engine: Engine,
        registry: Registry,
        settings: ServerSettings,
        version: str,
        *,
        limits: RequestLimits | None = None,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.settings = settings
        self.version = version
        self.infer = InferEndpoint(engine, settings, limits)

    def routes(self) -> list[Route]:
        """Starlette routes for every OIP endpoint."""
        table: list[tuple[str, Any, list[str]]] = [
            ("/v2", self.server_metadata, ["GET"]),
            ("/v2/health/live", self.live, ["GET"]),
            ("/v2/health/ready", self.ready, ["GET"]),
            (_MODEL, self.model_metadata, ["GET"]),
            (_VERSION, self.model_metadata, ["GET"]),
            (f"{_MODEL}/ready", self.model_ready, ["GET"]),
            (f"{_VERSION}/ready", self.model_ready, ["GET"]),
            ("/v2/repository/index", self.repository_index, ["POST"]),
            ("/v2/repository/models/{name}/load", self.load, ["POST"]),
            ("/v2/repository/models/{name}/unload", self.unload, ["POST"]),
        ]
        return [
            *(
                Route(path, guarded(endpoint, Protocol.OIP), methods=methods)
                for path, endpoint, methods in table
            ),
            Route(f"{_MODEL}/infer", self.infer, methods=["POST"]),
            Route(f"{_VERSION}/infer", self.infer, methods=["POST"]),
        ]

    async def server_metadata(self, request: Request) -> Response:
        """``GET /v2``: name, version and extensions."""
        return json_response({"name": "aimass", "version": self.version, "extensions": EXTENSIONS})

    async def live(self, request: Request) -> Response:
        """``GET /v2/health/live``: the process answers."""
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        """``GET /v2/health/ready``: 200 when the engine takes requests, else 503."""
        ready = self.engine.ready
        return json_response({"ready": ready}, 200 if ready else 503)

    async def model_metadata(self, request: Request) -> Response:
        """``GET /v2/models/{name}[/versions/{v}]``: versions, platform and tensors."""
        params = request.path_params
        info = await self.engine.metadata(params["name"], _version(params))
        versions = await run_in_threadpool(self.registry.list_versions, info.model)
        return json_response(_metadata(info, [v.version for v in versions]))

    async def model_ready(self, request: Request) -> Response:
        """``GET .../ready``: 200 when that version is loaded, else 503; 404 if unknown."""
        name = request.path_params["name"]
        ready = await self.engine.is_ready(name, _version(request.path_params))
        return json_response({"name": name, "ready": ready}, 200 if ready else 503)

    async def repository_index(self, request: Request) -> Response:
        """``POST /v2/repository/index``: every registered model and its loaded versions."""
        body = await read_body(request, self.settings.max_body_bytes)
        only_ready = False
        if body.strip():
            options = parse_json_object(body)
            only_ready = options.get("ready", False)
            if not isinstance(only_ready, bool):
                raise AimassError(
                    ErrorCode.INVALID_INPUT, "'ready' must be true or false", field="ready"
                )
        models = await run_in_threadpool(self.registry.list_models)
        loaded = self.engine.index()
        entries: list[dict[str, Any]] = [
            {
                "name": state.name,
                "version": str(state.version),
                "state": state.status.value,
                "reason": state.reason,
            }
            for state in loaded
        ]
        seen = {state.name for state in loaded}
        if not only_ready:
            entries += [
                {"name": m.name, "state": "", "reason": ""} for m in models if m.name not in seen
            ]
        else:
            entries = [e for e in entries if e["state"] == "READY"]
        entries.sort(key=lambda e: (e["name"], int(e.get("version", 0))))
        return json_response(entries)

    async def load(self, request: Request) -> Response:
        """``POST /v2/repository/models/{name}/load``: load now rather than on first use."""
        name = request.path_params["name"]
        await self.engine.load(name)
        return json_response({"name": name, "load": True})

    async def unload(self, request: Request) -> Response:
        """``POST /v2/repository/models/{name}/unload``: release it (and free its memory)."""
        name = request.path_params["name"]
        await self.engine.unload(name)
        return json_response({"name": name, "unload": True})


class InferEndpoint:
    """``POST /v2/models/{name}[/versions/{v}]/infer`` as a plain ASGI app.

    Not a Starlette endpoint: it is the hot path, and building Request and
    Response objects costs as much per request as decoding a small tensor.
    Errors take the same :func:`~aimass.server.errors.failure_response` as
    every route. The app's fast path calls it directly; the router mounts it
    too, to answer other methods with 405.
    """

    def __init__(
        self, engine: Engine, settings: ServerSettings, limits: RequestLimits | None
    ) -> None:
        self.engine = engine
        self.limits = limits
        self._check_above = -1 if limits is None else limits.body_bytes_always_within
        self._max_body = settings.max_body_bytes
        self._gzip_min = settings.gzip_min_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Decode, run on the engine, encode the outputs asked for."""
        # One coroutine, not a wrapper around another: this runs per request.
        try:
            headers = scope["headers"]
            header_length: bytes | None = None
            accept_encoding: bytes | None = None
            for key, value in headers:
                if key == _HEADER_LENGTH:
                    header_length = value
                elif key == b"accept-encoding":
                    accept_encoding = value
            body = await receive_body(receive, headers, self._max_body)
            decoded = decode_infer_request(
                body,
                None
                if header_length is None
                else parse_header_length(header_length.decode("latin-1"), len(body)),
            )
            if self.limits is not None and len(body) > self._check_above:
                self.limits.check_tensors(decoded.inputs)
            params = scope["path_params"]
            # The checks are skipped, not just cheap, when there is nothing to check.
            result = await self.engine.infer(
                params["name"],
                _version(params) if "version" in params else None,
                decoded.inputs,
                outputs=None if decoded.outputs is None else decoded.output_names,
                timeout=_timeout(decoded.parameters) if decoded.parameters else None,
            )
            encoded = encode_infer_response(
                decoded, result.model_name, result.model_version, result.outputs
            )
            accept = None if accept_encoding is None else accept_encoding.decode("latin-1")
            if encoded.header_length is None:
                await send_success(
                    send, encoded.body, accept_encoding=accept, gzip_min_bytes=self._gzip_min
                )
                return
            await send_success(
                send,
                encoded.body,
                content_type=_OCTET_STREAM,
                headers=[(_HEADER_LENGTH, str(encoded.header_length).encode())],
                accept_encoding=accept,
                gzip_min_bytes=self._gzip_min,
            )
        except ClientDisconnect:
            return  # nobody is left to answer
        except Exception as exc:
            response = failure_response(exc, Protocol.OIP, request_id(scope["headers"]))
            await response(scope, receive, send)


def _metadata(info: VersionInfo, versions: list[int]) -> dict[str, Any]:
    signature = info.manifest.signature
    return {
        "name": info.model,
        "versions": [str(v) for v in versions],
        "platform": f"aimass-{info.manifest.runtime}",
        "inputs": [_tensor(spec) for spec in signature.inputs],
        "outputs": [_tensor(spec) for spec in signature.outputs],
    }


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype.value, "shape": list(spec.shape)}
