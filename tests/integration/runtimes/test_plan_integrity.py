"""A framework artifact read after its version loaded (behind a serving plan) is checked again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from aimass.errors import AimassError, ErrorCode
from aimass.registry import Registry
from aimass.settings import Settings
from aimass.testing.models import iris_classifier


def _iris() -> tuple[Any, Any]:
    clf, x = iris_classifier()
    return clf, x[:4]


def _mlp() -> tuple[Any, Any]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval(), np.ones(
        (4, 4), np.float32
    )


@pytest.mark.parametrize(
    ("make", "artifact", "attribute"),
    [(_iris, "model.skops", "estimator"), (_mlp, "model.pt2", "module")],
    ids=["sklearn", "torch"],
)
def test_a_changed_artifact_is_refused_when_it_loads_after_its_version(
    local_settings: Settings,
    make: Callable[[], tuple[Any, Any]],
    artifact: str,
    attribute: str,
) -> None:
    registry = Registry.from_settings(local_settings)
    try:
        model, sample = make()
        info = registry.register(model, "m", sample_input=sample)
        directory = registry.materialize(info)
        loaded = registry.load("m")
        assert loaded.runtime.plan is not None  # type: ignore[attr-defined]
        assert artifact in {f.path for f in info.manifest.files}
        (directory / artifact).write_bytes(b"not what was registered")

        with pytest.raises(AimassError) as raised:
            getattr(loaded.runtime, attribute)

        assert raised.value.code is ErrorCode.INTEGRITY
        assert f"{artifact} changed" in raised.value.message
    finally:
        registry.close()
