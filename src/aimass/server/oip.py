"""The Open Inference Protocol (KServe v2) REST adapter over the serving engine.

Health, server and model metadata, model readiness, inference (JSON and
Triton's binary tensor extension) and the model repository extension. A model
name in the path may be a reference (``iris@production``, ``iris:2``); the
engine resolves it. The infer route is the hot path: it parses the raw body
with orjson through :mod:`aimass.codecs` into the request object, awaits the
engine and writes bytes, with no schema validation or logging in between.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from aimass.codecs import HEADER_LENGTH, RequestLimits, decode_infer_request, encode_infer_response
from aimass.codecs.request import parse_header_length, parse_json_object
from aimass.contract.reference import NAME_PATTERN, REFERENCE_PATTERN
from aimass.contract.request import InferRequest
from aimass.contract.signature import TensorSpec
from aimass.errors import AimassError, ErrorCode
from aimass.http.body import (
    DECODE_OFF_LOOP_BYTES,
    VERSION_HEADER,
    json_response,
    read_body,
    receive_body,
    send_success,
)
from aimass.http.caller import CALLER
from aimass.http.errors import Protocol, client_request_id, failure_response, request_id
from aimass.http.routes import Answer, Body, Param, Params, Route, json_content
from aimass.registry.records import VersionInfo
from aimass.roles import Role
from aimass.server.disconnect import DisconnectWatch
from aimass.serving.cache import ModelStatus
from aimass.serving.engine import Engine
from aimass.settings import ServerSettings

__all__ = ["EXTENSIONS", "InferEndpoint", "OipRoutes"]

EXTENSIONS = ["binary_tensor_data", "model_repository"]
"""The OIP extensions this server implements, as ``GET /v2`` lists them."""

_MODEL = "/v2/models/{name}"
_VERSION = "/v2/models/{name}/versions/{version}"
_HEADER_LENGTH = HEADER_LENGTH.lower().encode()
_OCTET_STREAM = (b"content-type", b"application/octet-stream")
_STALLED = "stalled: its recent calls all overran their deadlines"

NAME = Param.string(
    "name", pattern=REFERENCE_PATTERN, description="model name, or a reference: name:3, name@alias"
)
MODEL_NAME = Param.string("name", pattern=NAME_PATTERN, description="model name")
VERSION = Param.integer(
    "version",
    low=1,
    description="version number",
    not_found="model '{name}' has no version '{version}'",
)


_BINARY = {
    "type": "string",
    "format": "binary",
    "description": "a JSON header of Inference-Header-Content-Length bytes, then raw tensors",
}


def _invoker(
    method: str, path: str, name: str, summary: str, endpoint: Any, **declared: Any
) -> Route:
    return Route(method, path, name, summary, endpoint, Role.INVOKER, Protocol.OIP, **declared)


def _model(
    method: str, path: str, name: str, summary: str, endpoint: Any, **declared: Any
) -> Route:
    """A route on one model: in a scoped key's scope, 404 for an unknown one."""
    errors = declared.pop("errors", (ErrorCode.NOT_FOUND,))
    return _invoker(method, path, name, summary, endpoint, model="name", errors=errors, **declared)


def _repository(action: str, summary: str, endpoint: Any, answer: str, *errors: ErrorCode) -> Route:
    """``POST /v2/repository/models/{name}/ACTION``: a management action on one model."""
    return Route(
        "POST",
        f"/v2/repository/models/{{name}}/{action}",
        f"{action}Model",
        summary,
        endpoint,
        Role.DEPLOYER,
        Protocol.OIP,
        params=(NAME,),
        answers=(Answer(200, f"{action}ed", json_content(answer)),),
        errors=(ErrorCode.NOT_FOUND, *errors),
        model="name",
        management=True,
    )


def _timeout(parameters: Any) -> float | None:
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
    """The OIP endpoints, bound to one engine."""

    def __init__(
        self, engine: Engine, settings: ServerSettings, version: str, limits: RequestLimits
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.version = version
        self.infer = InferEndpoint(engine, settings, limits)

    def routes(self) -> list[Route]:
        """Every OIP endpoint, declared."""
        one, both = (NAME,), (MODEL_NAME, VERSION)
        header = Param.integer(
            HEADER_LENGTH.title(), "header", description="bytes of JSON before the binary tensors"
        )
        ready = (
            Answer(200, "loaded", json_content("ModelReady")),
            Answer(503, "not loaded yet: its load has started", json_content("ModelReady")),
        )
        infer_body = Body({**json_content("InferenceRequest"), "application/octet-stream": _BINARY})
        outputs = (
            Answer(
                200,
                "the outputs",
                {**json_content("InferenceResponse"), "application/octet-stream": _BINARY},
            ),
        )
        infer_errors = (
            ErrorCode.NOT_FOUND,
            ErrorCode.UNSUPPORTED,
            ErrorCode.OVERLOADED,
            ErrorCode.NOT_READY,
        )
        return [
            _invoker(
                "GET",
                "/v2",
                "serverMetadata",
                "Server metadata",
                self.server_metadata,
                answers=(Answer(200, "name, version, extensions", json_content("ServerMetadata")),),
            ),
            Route(
                "GET",
                "/v2/health/live",
                "live",
                "Liveness",
                self.live,
                None,
                Protocol.OIP,
                answers=(Answer(200, "the process answers", json_content("Live")),),
            ),
            Route(
                "GET",
                "/v2/health/ready",
                "ready",
                "Readiness",
                self.ready,
                None,
                Protocol.OIP,
                answers=(
                    Answer(200, "taking requests", json_content("Ready")),
                    Answer(
                        503,
                        "starting, stopping, or a start-up model not loaded or stalled",
                        json_content("Ready"),
                    ),
                ),
            ),
            _model(
                "GET",
                _MODEL,
                "modelMetadata",
                "Model metadata",
                self.model_metadata,
                params=one,
                answers=(Answer(200, "its tensors", json_content("ModelMetadata")),),
            ),
            _model(
                "GET",
                _VERSION,
                "modelVersionMetadata",
                "Model version metadata",
                self.model_metadata,
                params=both,
                answers=(Answer(200, "its tensors", json_content("ModelMetadata")),),
            ),
            _model(
                "GET",
                f"{_MODEL}/ready",
                "modelReady",
                "Model readiness (a model not loaded starts loading)",
                self.model_ready,
                params=one,
                answers=ready,
            ),
            _model(
                "GET",
                f"{_VERSION}/ready",
                "modelVersionReady",
                "Model version readiness (a version not loaded starts loading)",
                self.model_ready,
                params=both,
                answers=ready,
            ),
            _model(
                "POST",
                f"{_MODEL}/infer",
                "infer",
                "Run inference (JSON or binary tensors)",
                self.infer,
                params=(NAME, header),
                body=infer_body,
                answers=outputs,
                errors=infer_errors,
                asgi=True,
                fast=True,
            ),
            _model(
                "POST",
                f"{_VERSION}/infer",
                "inferVersion",
                "Run inference on one version (JSON or binary tensors)",
                self.infer,
                params=(MODEL_NAME, VERSION, header),
                body=infer_body,
                answers=outputs,
                errors=infer_errors,
                asgi=True,
                fast=True,
            ),
            Route(
                "POST",
                "/v2/repository/index",
                "repositoryIndex",
                "Every registered model and its loaded versions",
                self.repository_index,
                Role.DEPLOYER,
                Protocol.OIP,
                body=Body(json_content("RepositoryIndexRequest"), required=False),
                answers=(Answer(200, "the index", json_content("RepositoryIndex")),),
                listing=lambda entries, keep: [e for e in entries if keep(e["name"])],
            ),
            _repository(
                "load",
                "Load a model now rather than on first use",
                self.load,
                "Loaded",
                ErrorCode.NOT_READY,
            ),
            _repository("unload", "Release a model and its memory", self.unload, "Unloaded"),
        ]

    async def server_metadata(self, request: Request, params: Params) -> Response:
        """``GET /v2``: name, version and extensions."""
        return json_response({"name": "aimass", "version": self.version, "extensions": EXTENSIONS})

    async def live(self, request: Request, params: Params) -> Response:
        """``GET /v2/health/live``: the process answers."""
        return json_response({"live": True})

    async def ready(self, request: Request, params: Params) -> Response:
        """``GET /v2/health/ready``: 200 when the start-up models serve, else 503."""
        ready = await self.engine.serves_startup_models()
        return json_response({"ready": ready}, 200 if ready else 503)

    async def model_metadata(self, request: Request, params: Params) -> Response:
        """``GET /v2/models/{name}[/versions/{v}]``: versions, platform and tensors."""
        info = await self.engine.metadata(params["name"], params.get("version"))
        return json_response(_metadata(info, await self.engine.versions(info.model)))

    async def model_ready(self, request: Request, params: Params) -> Response:
        """``GET .../ready``: 200 once that version is loaded, else 503 (and it starts loading)."""
        name = params["name"]
        ready = await self.engine.is_ready(name, params.get("version"))
        return json_response({"name": name, "ready": ready}, 200 if ready else 503)

    async def repository_index(self, request: Request, params: Params) -> Response:
        """``POST /v2/repository/index``: every registered model and its loaded versions.

        A model not in memory shows the version its name resolves to (the
        latest ready one) as UNAVAILABLE, reason "not loaded", as Triton does.
        A loaded one also shows ``overruns``, its calls abandoned because every
        request in them timed out, and a reason once its recent calls all did.
        """
        only_ready = False
        body = await read_body(request, self.settings.max_body_bytes)
        if body.strip():
            only_ready = parse_json_object(body).get("ready", False)
            if not isinstance(only_ready, bool):
                raise AimassError(
                    ErrorCode.INVALID_INPUT, "'ready' must be true or false", field="ready"
                )
        models = await self.engine.models()
        loaded = self.engine.index()
        entries: list[dict[str, Any]] = [
            {
                "name": state.name,
                "version": str(state.version),
                "state": state.status.value,
                "reason": _STALLED if state.stalled else state.reason,
                "overruns": state.overruns,
            }
            for state in loaded
        ]
        seen = {state.name for state in loaded}
        if not only_ready:
            # Registered, not in memory: the version a plain name would load.
            entries += [
                {
                    "name": m.name,
                    "version": "" if m.latest_version is None else str(m.latest_version),
                    "state": ModelStatus.UNAVAILABLE.value,
                    "reason": "not loaded" if m.latest_version is not None else "no ready version",
                }
                for m in models
                if m.name not in seen
            ]
        else:
            entries = [e for e in entries if e["state"] == ModelStatus.READY]
        entries.sort(key=lambda e: (e["name"], int(e["version"] or 0)))
        return json_response(entries)

    async def load(self, request: Request, params: Params) -> Response:
        """``POST /v2/repository/models/{name}/load``: load now rather than on first use."""
        await self.engine.load(params["name"])
        return json_response({"name": params["name"], "load": True})

    async def unload(self, request: Request, params: Params) -> Response:
        """``POST /v2/repository/models/{name}/unload``: release it (and free its memory)."""
        await self.engine.unload(params["name"])
        return json_response({"name": params["name"], "unload": True})


class InferEndpoint:
    """``POST /v2/models/{name}[/versions/{v}]/infer`` as a plain ASGI app.

    Not a Starlette endpoint: it is the hot path, and building Request and
    Response objects costs as much per request as decoding a small tensor.
    Errors take the same :func:`~aimass.http.errors.failure_response` as
    every route. The fast path calls it directly; the router mounts it too,
    to answer other methods with 405.
    """

    def __init__(self, engine: Engine, settings: ServerSettings, limits: RequestLimits) -> None:
        self.engine = engine
        self.limits = limits
        self._check_above = limits.body_bytes_always_within
        self._max_body = settings.max_body_bytes
        self._gzip_min = settings.gzip_min_bytes
        self._disconnects = DisconnectWatch()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Decode, run on the engine, encode the outputs asked for."""
        # One coroutine, not a wrapper around another: this runs per request.
        try:
            headers = scope["headers"]
            header_length: bytes | None = None
            accept_encoding: bytes | None = None
            rid: bytes | None = None
            for key, value in headers:
                if key == _HEADER_LENGTH:
                    header_length = value
                elif key == b"accept-encoding":
                    accept_encoding = value
                elif key == b"x-request-id":
                    rid = value
            body = await receive_body(receive, headers, self._max_body)
            params = scope["path_params"]
            name = params["name"]
            version = VERSION.parse(params["version"], params) if "version" in params else None
            try:
                if len(body) > DECODE_OFF_LOOP_BYTES:
                    request = await run_in_threadpool(
                        self._decode, body, header_length, name, version
                    )
                else:
                    request = self._decode(body, header_length, name, version)
            except AimassError as exc:
                if exc.code is ErrorCode.INVALID_INPUT:
                    # An unknown model is the answer before a malformed body.
                    await self.engine.metadata(name, version)
                raise
            if rid is not None:
                request.request_id = client_request_id(rid)
            request.headers = headers
            caller = scope.get(CALLER)
            if caller is not None:
                request.caller = caller
            if request.parameters:
                request.timeout = _timeout(request.parameters)
            result = await self._disconnects.watch(receive, self.engine.infer(request))
            encoded = encode_infer_response(
                request, result.model_name, result.model_version, result.outputs
            )
            accept = None if accept_encoding is None else accept_encoding.decode("latin-1")
            answered = (VERSION_HEADER, f"{result.model_name}:{result.model_version}".encode())
            if encoded.header_length is None:
                await send_success(
                    send,
                    encoded.body,
                    headers=[answered],
                    accept_encoding=accept,
                    gzip_min_bytes=self._gzip_min,
                )
                return
            await send_success(
                send,
                encoded.body,
                content_type=_OCTET_STREAM,
                headers=[(_HEADER_LENGTH, str(encoded.header_length).encode()), answered],
                accept_encoding=accept,
                gzip_min_bytes=self._gzip_min,
            )
        except ClientDisconnect:
            return  # nobody is left to answer
        except Exception as exc:
            response = failure_response(exc, Protocol.OIP, request_id(scope["headers"]))
            await response(scope, receive, send)

    def _decode(
        self, body: bytes, header_length: bytes | None, name: str, version: int | None
    ) -> InferRequest:
        request = decode_infer_request(
            body,
            None
            if header_length is None
            else parse_header_length(header_length.decode("latin-1"), len(body)),
            model=name,
            version=version,
            limits=self.limits,
        )
        if len(body) > self._check_above:
            self.limits.check_strings(request.inputs)
        return request


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
    tensor: dict[str, Any] = {
        "name": spec.name,
        "datatype": spec.datatype.value,
        "shape": list(spec.shape),
    }
    if spec.nullable:  # OIP's metadata has no such field: it travels as a parameter
        tensor["parameters"] = {"nullable": True}
    return tensor
