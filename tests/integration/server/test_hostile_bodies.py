"""Hostile and large request bodies over real HTTP: cheap to refuse, and never a stalled server.

The server here takes bodies of up to 64 MiB, so a large body is decoded
rather than refused at the door.
"""

from __future__ import annotations

import gzip
import resource
import socket
import struct
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from aimass.app import create_app
from aimass.registry import Registry
from aimass.settings import ServerSettings, Settings
from aimass.testing.models import iris_classifier
from aimass.testing.server import serve_in_thread

MIB = 1024 * 1024
IRIS_ROW = {
    "inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]
}


@pytest.fixture(scope="module")
def roomy_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(
        home=tmp_path_factory.mktemp("roomy"),
        server=ServerSettings(max_body_bytes=64 * MIB, models=["iris"]),
    )
    registry = Registry.from_settings(settings)
    clf, x = iris_classifier()
    registry.register(clf, "iris", sample_input=x[:2], task="classification")
    with serve_in_thread(create_app(settings, registry=registry)) as url:
        yield url
    registry.close()


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# (shape, bytes of data, what the 400 says): one empty element is 4 bytes.
SHAPES = {
    "200 million": ([200_000_000], 4, "has 200000000 elements"),
    "2**40": ([2**40], 4, f"has {2**40} elements"),
    "2**62": ([2**62], 4, f"has {2**62} elements"),
    "empty past numpy": ([0, 2**63], 0, "larger than numpy can hold"),
}


@pytest.mark.parametrize(("shape", "size", "words"), SHAPES.values(), ids=SHAPES.keys())
def test_a_binary_bytes_shape_its_data_cannot_fill_is_refused_before_allocating(
    roomy_url: str, shape: list[int], size: int, words: str
) -> None:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "BYTES",
                    "shape": shape,
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    )
    before = _peak_rss_mib()
    with httpx.Client(base_url=roomy_url, timeout=120) as client:
        answer = client.post(
            "/v2/models/iris/infer",
            content=header + struct.pack("<I", 0)[:size],
            headers={"inference-header-content-length": str(len(header))},
        )
        assert answer.status_code == 400, answer.text
        assert words in answer.json()["error"]
        # The server (this process) allocated nothing sized by the shape...
        assert _peak_rss_mib() - before < 256
        # ...and keeps serving.
        assert client.post("/v2/models/iris/infer", json=IRIS_ROW).status_code == 200


def _slow_to_decode() -> bytes:
    """~28 MB of JSON, gzipped to a few KB so it arrives at once, refused only at its end.

    A million strings are walked one by one (BYTES elements are Python
    objects), then the last, longer than the 1 MiB string limit, makes it a
    413 with nothing to await between decoding and answering.
    """
    texts = ["twenty-four characters!!"] * 1_000_000 + ["x" * (MIB + 1)]
    document = {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [len(texts)]}]}
    document["inputs"][0]["data"] = texts
    return gzip.compress(orjson.dumps(document), compresslevel=9)


def test_a_small_request_is_answered_while_a_large_body_is_decoded(roomy_url: str) -> None:
    body = _slow_to_decode()
    address = urlsplit(roomy_url)
    answered: list[str] = []
    sent = threading.Event()

    def large() -> None:
        with socket.create_connection((address.hostname, address.port or 80)) as sock:
            head = (
                f"POST /v2/models/iris/infer HTTP/1.1\r\nhost: {address.netloc}\r\n"
                f"content-type: application/json\r\ncontent-encoding: gzip\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            ).encode()
            sock.sendall(head + body)
            sent.set()
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        answered.append(f"large {reply.split(b' ', 2)[1].decode()}")

    thread = threading.Thread(target=large)
    thread.start()
    assert sent.wait(60)
    # The whole body is with the server: it is decoding it (or about to).
    with httpx.Client(base_url=roomy_url, timeout=120) as client:
        small = client.get("/v2/health/live")
        answered.append(f"small {small.status_code}")
    thread.join(120)
    assert answered == ["small 200", "large 413"]
