"""Request limits, the request deadline, CORS and TLS, over real HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aimass.db.database import open_engine
from aimass.gateway.audit import AuditLog
from aimass.gateway.gateway import Gateway
from aimass.gateway.keys import KeyStore
from aimass.gateway.layer import GatewayLayer
from aimass.gateway.ratelimit import MemoryLimiter
from aimass.http.errors import Protocol
from aimass.http.routes import Params, Route, RouteTable
from aimass.settings import GatewaySettings
from aimass.testing.server import serve_in_thread
from tests.integration.gateway.gatewaytest import ServeFactory


def test_tensor_element_and_string_limits(serve: ServeFactory) -> None:
    with serve(max_tensor_elements=8, max_string_bytes=16) as served, served.client() as client:
        rows = {
            "inputs": [{"name": "input", "datatype": "FP64", "shape": [3, 4], "data": [0.5] * 12}]
        }
        refused = client.post("/v2/models/iris/infer", json=rows)
        assert refused.status_code == 413
        assert "input 'input' has 12 elements; the limit is 8" in refused.json()["error"]
        text = client.post("/v1/embeddings", json={"model": "iris", "input": ["é" * 9]})
        assert text.status_code == 413
        assert text.json()["error"]["message"] == (
            "a string in 'input' is 18 bytes long; the limit is 16"
        )
        assert text.json()["error"]["type"] == "invalid_request_error"


def _slow_routes(release: asyncio.Event) -> RouteTable:
    async def slow(request: Request, params: Params) -> Response:
        await release.wait()
        return JSONResponse({"late": True})

    return RouteTable(
        [
            Route("GET", "/v2/slow", "slowOip", "hangs", slow, None, Protocol.OIP),
            Route("GET", "/v1/slow", "slowOpenAI", "hangs", slow, None, Protocol.OPENAI),
        ],
        {},
    )


def test_requests_past_the_deadline_get_504(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'r.db'}")
    settings = GatewaySettings(request_timeout_s=0.2)
    gateway = Gateway(
        settings, keys=KeyStore(engine), audit=AuditLog(engine), limiter=MemoryLimiter()
    )
    release = asyncio.Event()  # never set: the endpoint hangs until the deadline
    table = _slow_routes(release)
    app = GatewayLayer(
        Starlette(routes=table.starlette_routes()), gateway, table, max_body_bytes=1024
    )
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        started = time.monotonic()
        oip = client.get("/v2/slow")
        assert oip.status_code == 504
        assert oip.json() == {
            "error": f"the request took longer than 0.2s (request id {oip.headers['x-request-id']})"
        }
        assert time.monotonic() - started < 5
        openai = client.get("/v1/slow")
        assert openai.status_code == 504 and openai.json()["error"]["type"] == "server_error"
    engine.dispose()


def test_cors_preflight_and_exposed_headers(serve: ServeFactory) -> None:
    origin = "https://dashboard.example"
    with serve(cors_origins=[origin]) as served:
        secret = served.key(rate=5.0, burst=5)
        with served.client() as client:
            preflight = client.options(
                "/v2/models/iris/infer",
                headers={
                    "origin": origin,
                    "access-control-request-method": "POST",
                    "access-control-request-headers": "authorization,content-type",
                },
            )
            assert preflight.status_code == 200  # no key needed to ask
            assert preflight.headers["access-control-allow-origin"] == origin
            assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
            other = client.options(
                "/v2",
                headers={"origin": "https://evil.example", "access-control-request-method": "GET"},
            )
            assert other.status_code == 400
            call = client.get("/v2", headers={"origin": origin, "x-api-key": secret})
            assert call.status_code == 200
            assert call.headers["access-control-allow-origin"] == origin
            exposed = call.headers["access-control-expose-headers"].lower()
            assert "x-ratelimit-remaining" in exposed and "retry-after" in exposed


_SERVE = [sys.executable, "-c", "from aimass.cli.app import main; main()", "serve"]


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_serve_over_tls_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMASS_")}
    env["AIMASS_HOME"] = str(tmp_path / "home")
    args = ["--port", "0", "--tls-cert", str(cert), "--tls-key", str(key)]
    process = subprocess.Popen(
        [*_SERVE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("aimass serving on https://127.0.0.1:"), line
        url = line.split()[-1]
        deadline = time.monotonic() + 120
        with httpx.Client(
            base_url=url, verify=ssl.create_default_context(cafile=cert), timeout=5
        ) as client:
            while True:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "not ready over TLS"
                try:
                    ready = client.get("/v2/health/ready")
                except httpx.TransportError:
                    continue
                if ready.status_code == 200:
                    break
        with httpx.Client(base_url=url, timeout=5) as untrusting:
            try:
                untrusting.get("/v2/health/live")
                raise AssertionError("an unverified certificate was accepted")
            except httpx.ConnectError as exc:
                assert "CERTIFICATE_VERIFY_FAILED" in str(exc)
        plain = url.replace("https://", "http://")
        with httpx.Client(base_url=plain, timeout=5) as client:
            try:
                answer = client.get("/v2/health/live")
                assert answer.status_code == 400  # uvicorn: plain HTTP on a TLS port
            except httpx.TransportError:
                pass  # or the TLS server just closes the connection
    finally:
        process.terminate()
        process.communicate(timeout=60)


def test_tls_needs_both_files(tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMASS_")}
    env["AIMASS_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [*_SERVE, "--port", "0", "--tls-cert", str(cert)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "TLS needs both a certificate and a key" in done.stderr
