"""The torch runtime: every format round-trips the digits MLP in a fresh process.

The modules are defined at module level so the ``state_dict`` format can
import them back; the fresh process finds this module through PYTHONPATH.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from aimass.contract.manifest import Manifest
from aimass.contract.runtime import LoadOptions
from aimass.errors import AimassError, ErrorCode
from aimass.runtimes.torch import TorchRuntime
from aimass.testing.checks import check_runtime

BAD_INPUTS: list[dict[str, np.ndarray[Any, Any]]] = [
    {"input": np.zeros((2, 63), dtype=np.float32)},
    {"input": np.zeros((2, 8, 8), dtype=np.float32)},
    {"input": np.full((2, 64), "x", dtype=object)},
]


class DigitsMLP(nn.Module):
    """64 → 512 → 512 → 10, the classic digits classifier."""

    def __init__(self, hidden: int = 512, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


class SignBranch(nn.Module):
    """Data-dependent control flow: torch.export refuses it, TorchScript keeps it."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > 0):
            return x * self.scale
        return x - self.scale


class TwoTowers(nn.Module):
    """Two named inputs, two named outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(5, 2)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> dict[str, torch.Tensor]:
        total = self.a(left) + self.b(right)
        return {"total": total, "gap": (self.a(left) - self.b(right)).abs().sum(dim=1)}


@pytest.fixture(scope="module")
def digits() -> tuple[DigitsMLP, np.ndarray[Any, Any]]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    features = torch.from_numpy((x / 16.0).astype(np.float32))
    labels = torch.from_numpy(y)
    torch.manual_seed(0)
    model = DigitsMLP()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        for batch in torch.randperm(len(features)).split(64):  # type: ignore[no-untyped-call]
            optimiser.zero_grad()
            loss = nn.functional.cross_entropy(model(features[batch]), labels[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
    model.eval()
    return model, features.numpy()


@pytest.fixture
def importable_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the conformance suite's fresh process import this module's classes."""
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))


def _eager(model: nn.Module) -> Any:
    def predict(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()  # type: ignore[no-any-return]

    return predict


def test_digits_mlp_learned(digits: tuple[DigitsMLP, np.ndarray[Any, Any]]) -> None:
    from sklearn.datasets import load_digits

    model, x = digits
    accuracy = (_eager(model)(x).argmax(1) == load_digits().target).mean()
    assert accuracy > 0.9


@pytest.mark.parametrize("fmt", ["state_dict", "export", "torchscript"])
@pytest.mark.usefixtures("importable_tests")
def test_each_format_round_trips_in_a_fresh_process(
    digits: tuple[DigitsMLP, np.ndarray[Any, Any]], fmt: str
) -> None:
    model, x = digits
    loaded = check_runtime(
        model,
        x[:7],
        expected=_eager(model),
        runtime="torch",
        bad_inputs=BAD_INPUTS,
        format=fmt,
        init_kwargs={"hidden": 512},
    )
    assert loaded.manifest.format == fmt
    assert loaded.manifest.unsafe is (fmt != "state_dict")
    spec = loaded.manifest.signature
    assert [(s.name, s.datatype.value, s.shape) for s in spec.inputs] == [
        ("input", "FP32", (-1, 64))
    ]
    assert [(s.name, s.datatype.value, s.shape) for s in spec.outputs] == [
        ("output", "FP32", (-1, 10))
    ]


def test_state_dict_is_preferred_for_an_importable_class(
    digits: tuple[DigitsMLP, np.ndarray[Any, Any]], tmp_path: Path
) -> None:
    model, x = digits
    saved = TorchRuntime.save(model, tmp_path, sample_input=x[:3], onnx_serving_plan=False)
    assert saved.format == "state_dict"
    assert not saved.unsafe
    assert saved.options["class"] == f"{DigitsMLP.__module__}:DigitsMLP"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_sequential_falls_back_to_export(tmp_path: Path) -> None:
    # nn.Sequential cannot be rebuilt from JSON kwargs, so the state dict cannot load back.
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh())
    saved = TorchRuntime.save(model, tmp_path, sample_input=torch.ones(1, 4))
    assert saved.format == "export"
    assert saved.unsafe


def test_data_dependent_module_falls_back_to_torchscript(tmp_path: Path) -> None:
    model = SignBranch()
    # state_dict would work for this importable class, so only offer the others.
    with pytest.raises(AimassError) as raised:
        TorchRuntime.save(model, tmp_path, sample_input=torch.ones(2, 3), format="export")
    assert raised.value.code is ErrorCode.UNSUPPORTED
    saved = TorchRuntime.save(model, tmp_path, sample_input=torch.ones(2, 3), format="torchscript")
    assert saved.format == "torchscript"
    assert saved.options["torchscript"] == "script"


def test_class_defined_in_a_function_is_refused_for_state_dict(tmp_path: Path) -> None:
    class Local(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x)  # type: ignore[no-any-return]

    with pytest.raises(AimassError) as raised:
        TorchRuntime.save(Local(), tmp_path, sample_input=torch.ones(2, 2), format="state_dict")
    assert raised.value.code is ErrorCode.UNSUPPORTED
    assert "cannot be imported" in raised.value.message
    assert list(tmp_path.iterdir()) == []


def test_pickle_formats_are_refused_when_pickles_are_forbidden(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 3))
    # Without a serving plan, which would serve without reading the pickle.
    saved = TorchRuntime.save(
        model, tmp_path, sample_input=torch.ones(2, 4), onnx_serving_plan=False
    )
    manifest = Manifest(
        runtime="torch",
        framework=saved.framework,
        framework_version=saved.framework_version,
        format=saved.format,
        unsafe=saved.unsafe,
        signature=saved.signature,
        options=saved.options,
    )
    with pytest.raises(AimassError) as raised:
        TorchRuntime.load(tmp_path, manifest, LoadOptions(allow_pickle=False))
    assert raised.value.code is ErrorCode.UNSAFE_FORMAT


@pytest.mark.usefixtures("importable_tests")
def test_mapping_sample_gives_named_inputs_and_outputs() -> None:
    torch.manual_seed(0)
    model = TwoTowers().eval()
    sample = {
        "left": np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32),
        "right": np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32),
    }

    def expected(s: dict[str, np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        with torch.inference_mode():
            out = model(**{k: torch.from_numpy(v) for k, v in s.items()})
        return out["total"].numpy()  # type: ignore[no-any-return]

    loaded = check_runtime(
        model,
        sample,
        expected=expected,
        runtime="torch",
        bad_inputs=[{"left": np.zeros((2, 3), np.float32)}],
    )
    assert loaded.manifest.format == "state_dict"
    assert [s.name for s in loaded.manifest.signature.inputs] == ["left", "right"]
    assert [s.name for s in loaded.manifest.signature.outputs] == ["total", "gap"]


def test_save_needs_a_sample_input(tmp_path: Path) -> None:
    with pytest.raises(AimassError) as raised:
        TorchRuntime.save(nn.Linear(2, 1), tmp_path)
    assert raised.value.code is ErrorCode.INVALID_INPUT


def test_save_restores_training_mode(tmp_path: Path) -> None:
    model = DigitsMLP(hidden=8).train()
    TorchRuntime.save(model, tmp_path, sample_input=torch.ones(2, 64), init_kwargs={"hidden": 8})
    assert model.training


def test_handles_modules_but_not_other_objects() -> None:
    assert TorchRuntime.handles(nn.Linear(2, 1))
    assert TorchRuntime.handles(DigitsMLP(hidden=4))
    assert not TorchRuntime.handles(np.zeros(3))
    assert not TorchRuntime.handles(torch.ones(3))


def test_handles_leaves_transformers_models_to_their_runtime() -> None:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=20,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
    )
    assert not TorchRuntime.handles(BertModel(config))


def test_sample_the_module_cannot_run_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(AimassError) as raised:
        TorchRuntime.save(nn.Linear(4, 1), tmp_path, sample_input=torch.ones(2, 5))
    assert raised.value.code is ErrorCode.INVALID_INPUT


@pytest.mark.slow
def test_exported_program_file_registers_as_export(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1)).eval()
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, (torch.ones(2, 4),), dynamic_shapes=({0: batch},))
    source = tmp_path / "program.pt2"
    torch.export.save(program, source)
    assert TorchRuntime.handles(source)
    assert not TorchRuntime.handles(tmp_path / "weights.bin")
    sample = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    loaded = check_runtime(source, sample, expected=_eager(model), runtime="torch")
    assert loaded.manifest.format == "export"
    assert loaded.manifest.unsafe


def test_threads_option_applies_when_the_model_loads(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 3))
    # Torch's threads: without a serving plan, which would serve instead.
    saved = TorchRuntime.save(
        model, tmp_path, sample_input=torch.ones(2, 4), threads=1, onnx_serving_plan=False
    )
    assert saved.options["threads"] == 1
    manifest = Manifest(
        runtime="torch",
        framework=saved.framework,
        framework_version=saved.framework_version,
        format=saved.format,
        signature=saved.signature,
        options=saved.options,
    )
    before = torch.get_num_threads()
    try:
        TorchRuntime.load(tmp_path, manifest, LoadOptions())
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
