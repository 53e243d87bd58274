"""The warm-up request follows the version's signature and a real version answers it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from aimass.contract.manifest import Manifest
from aimass.contract.runtime import Capability
from aimass.contract.signature import Datatype, Signature, Task, TensorSpec
from aimass.deployments.warmup import warmup_request
from aimass.registry import Registry
from aimass.registry.records import VersionInfo
from aimass.settings import Settings
from aimass.testing.models import iris_classifier


@pytest.fixture
def registry(local_settings: Settings) -> Iterator[Registry]:
    """A registry on SQLite and a local directory."""
    opened = Registry.from_settings(local_settings)
    yield opened
    opened.close()


def test_a_registered_version_answers_its_warmup(registry: Registry) -> None:
    model, x = iris_classifier()
    info = registry.register(model, "iris", sample_input=x[:2])
    request = warmup_request(info)
    assert (request.model, request.version) == ("iris", info.version)
    assert request.capability is Capability.PREDICT
    (name,) = request.inputs
    assert request.inputs[name].shape == (1, 4)
    assert not request.inputs[name].any()
    outputs = registry.load("iris", info.version).predict_named(request.inputs)
    assert all(len(value) == 1 for value in outputs.values())


def test_variable_dimensions_are_one_and_text_is_empty() -> None:
    signature = Signature(
        inputs=(
            TensorSpec(name="text", datatype=Datatype.BYTES, shape=(-1,)),
            TensorSpec(name="pixels", datatype=Datatype.UINT8, shape=(-1, 2, -1)),
        ),
        outputs=(TensorSpec(name="embedding", datatype=Datatype.FP32, shape=(-1, 8)),),
    )
    manifest = Manifest(
        runtime="python",
        framework="custom",
        framework_version="1",
        format="python",
        task=Task.EMBEDDING,
        signature=signature,
    )
    info = VersionInfo(
        model="m",
        version=2,
        status="ready",
        manifest=manifest,
        created_at=datetime.now(UTC),
        created_by="t",
    )
    request = warmup_request(info)
    assert request.inputs["text"].tolist() == [""]
    assert request.inputs["text"].dtype == np.dtype(object)
    assert request.inputs["pixels"].shape == (1, 2, 1)
    assert request.inputs["pixels"].dtype == np.dtype("uint8")
    # Every version predicts, and predict comes first among the capabilities.
    assert request.capability is Capability.PREDICT
