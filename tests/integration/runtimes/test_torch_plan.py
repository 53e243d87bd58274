"""PyTorch modules served through their ONNX serving plan, and the modules that get none.

The modules are defined at module level so the ``state_dict`` format can
import them back (a fresh process finds this module through PYTHONPATH).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from aimass.contract.manifest import Manifest
from aimass.contract.runtime import Arrays, LoadOptions
from aimass.convert.plan import PLAN_FILE
from aimass.errors import AimassError, ErrorCode
from aimass.registry import Registry
from aimass.runtimes.torch import TorchRuntime
from aimass.runtimes.torch_formats import ATOL, RTOL
from aimass.settings import Settings
from aimass.testing.checks import save_and_load

RNG = np.random.default_rng(0)
ROWS = RNG.random((40, 64), dtype=np.float32)


class Mlp(nn.Module):
    """The benchmark's shape, smaller: 64 → 32 → 32 → 10."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


class TwoTowers(nn.Module):
    """Two named inputs, two named outputs."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(5, 2)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"total": self.a(left) + self.b(right), "gap": (self.a(left) - self.b(right)).sum(1)}


class FiniteOnly(nn.Module):
    """Refuses NaN and infinity, as a module with an input check does."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(torch.isfinite(x).all()):
            raise ValueError("NaN or infinity in the input")
        return self.linear(x)  # type: ignore[no-any-return]


class SignBranch(nn.Module):
    """Data-dependent control flow, which a traced export bakes into one branch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > 0):
            return x * 2.0
        return x - 2.0


class TokenBag(nn.Module):
    """Integer token ids in, one vector out."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.EmbeddingBag(50, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids)  # type: ignore[no-any-return]


def _eager(module: nn.Module, inputs: Arrays) -> Arrays:
    with torch.inference_mode():
        if list(inputs) == ["input"]:
            out = module(torch.from_numpy(inputs["input"]))
        else:
            out = module(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    if isinstance(out, dict):
        return {k: v.numpy() for k, v in out.items()}
    return {"output": out.numpy()}


_save_and_load = partial(save_and_load, TorchRuntime)


def _assert_close(got: Arrays, want: Arrays) -> None:
    assert list(got) == list(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype, name
        np.testing.assert_allclose(got[name], value, rtol=RTOL, atol=ATOL, err_msg=name)


def test_an_mlp_is_served_by_its_plan_and_matches_torch(tmp_path: Path) -> None:
    module = Mlp().eval()
    runtime = _save_and_load(module, tmp_path, ROWS[:8])

    plan = runtime.manifest.options["onnx_plan"]
    assert plan["file"] == PLAN_FILE
    assert plan["outputs"] == {"output": "output"}
    assert plan["finite_only"] is False
    assert plan["tolerance"] == {"rtol": RTOL, "atol": ATOL}
    assert (tmp_path / PLAN_FILE).is_file()
    assert runtime.plan is not None
    for rows in (ROWS, ROWS[:1], ROWS[3:20]):
        _assert_close(runtime.predict({"input": rows}), _eager(module, {"input": rows}))


def test_the_plan_answers_nan_and_infinity_as_torch_does(tmp_path: Path) -> None:
    module = Mlp().eval()
    runtime = _save_and_load(module, tmp_path, ROWS[:8])
    rows = ROWS[:3].copy()
    rows[0, 5], rows[1, 9] = np.nan, np.inf

    got = runtime.predict({"input": rows})["output"]

    want = _eager(module, {"input": rows})["output"]
    assert np.isnan(got[0]).all() and np.isnan(want[0]).all()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[2], want[2], rtol=RTOL, atol=ATOL)


def test_a_module_that_refuses_non_finite_input_gets_a_plan_that_refuses_it(
    tmp_path: Path,
) -> None:
    module = FiniteOnly().eval()
    sample = RNG.random((6, 4), dtype=np.float32)
    runtime = _save_and_load(module, tmp_path, sample, format="state_dict")

    assert runtime.manifest.options["onnx_plan"]["finite_only"] is True
    _assert_close(runtime.predict({"input": sample}), _eager(module, {"input": sample}))
    bad = sample[:2].copy()
    bad[1, 3] = np.nan
    with pytest.raises(AimassError) as raised:
        runtime.predict({"input": bad})
    assert raised.value.code is ErrorCode.INVALID_INPUT
    assert raised.value.message == (
        "input 'input' contains NaN or infinity, which this model does not accept"
    )


def test_named_inputs_and_outputs_map_through_the_plan(tmp_path: Path) -> None:
    module = TwoTowers().eval()
    sample = {
        "left": RNG.normal(size=(5, 3)).astype(np.float32),
        "right": RNG.normal(size=(5, 5)).astype(np.float32),
    }
    runtime = _save_and_load(module, tmp_path, sample)

    assert runtime.manifest.options["onnx_plan"]["outputs"] == {"total": "total", "gap": "gap"}
    assert runtime.plan is not None
    # The plan takes inputs by name, whatever order they arrive in.
    reordered = {"right": sample["right"], "left": sample["left"]}
    _assert_close(runtime.predict(reordered), _eager(module, sample))


def test_data_dependent_control_flow_gets_no_plan_and_torch_serves_both_branches(
    tmp_path: Path,
) -> None:
    runtime = _save_and_load(SignBranch(), tmp_path, np.ones((2, 3), np.float32))

    assert "onnx_plan" not in runtime.manifest.options
    assert not (tmp_path / PLAN_FILE).exists()
    assert runtime.plan is None
    positive = runtime.predict({"input": np.ones((1, 3), np.float32)})
    negative = runtime.predict({"input": -np.ones((1, 3), np.float32)})
    np.testing.assert_array_equal(positive["output"], [[2, 2, 2]])
    np.testing.assert_array_equal(negative["output"], [[-3, -3, -3]])


def test_integer_inputs_get_no_plan(tmp_path: Path) -> None:
    ids = RNG.integers(50, size=(4, 6))
    runtime = _save_and_load(TokenBag().eval(), tmp_path, ids)

    assert runtime.plan is None
    assert "onnx_plan" not in runtime.manifest.options


def test_the_save_option_turns_the_plan_off(tmp_path: Path) -> None:
    runtime = _save_and_load(Mlp().eval(), tmp_path, ROWS[:4], onnx_serving_plan=False)

    assert runtime.plan is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_the_threads_option_sizes_the_plan_session(tmp_path: Path) -> None:
    runtime = _save_and_load(Mlp().eval(), tmp_path, ROWS[:4], threads=2)

    assert runtime.plan is not None
    assert runtime.plan.session.get_session_options().intra_op_num_threads == 2


def test_a_pickled_version_serves_through_its_plan_when_pickles_are_refused(
    tmp_path: Path,
) -> None:
    module = nn.Sequential(nn.Linear(4, 3), nn.Tanh()).eval()
    sample = RNG.random((4, 4), dtype=np.float32)
    saved = TorchRuntime.save(module, tmp_path, sample_input=sample)
    assert saved.format == "export" and saved.unsafe
    manifest = saved.to_manifest(TorchRuntime.name)

    runtime = TorchRuntime.load(tmp_path, manifest, LoadOptions(allow_pickle=False))

    _assert_close(runtime.predict({"input": sample}), _eager(module, {"input": sample}))
    with pytest.raises(AimassError) as raised:
        _ = runtime.module
    assert raised.value.code is ErrorCode.UNSAFE_FORMAT


def test_the_plan_survives_a_manifest_round_trip_through_json(tmp_path: Path) -> None:
    saved = TorchRuntime.save(Mlp().eval(), tmp_path, sample_input=ROWS[:4])
    manifest = Manifest.model_validate_json(saved.to_manifest(TorchRuntime.name).model_dump_json())

    runtime = TorchRuntime.load(tmp_path, manifest, LoadOptions())

    assert runtime.plan is not None


_FRESH_PROCESS = """
import json, sys
import numpy as np
import aimass

model = aimass.load("mlp")
x = np.load(sys.argv[1])
np.save(sys.argv[2], model.predict(x))
before = "torch" in sys.modules
module = model.runtime.module
print(json.dumps({
    "plan": model.runtime.plan is not None,
    "torch_before_module": before,
    "module": type(module).__name__,
}))
"""


@pytest.mark.slow
def test_a_version_with_a_plan_loads_and_serves_in_a_fresh_process_without_torch(
    local_settings: Settings, tmp_path: Path
) -> None:
    module = Mlp().eval()
    registry = Registry.from_settings(local_settings)
    info = registry.register(module, "mlp", sample_input=ROWS[:8])
    registry.close()
    assert PLAN_FILE in {f.path for f in info.manifest.files}
    np.save(tmp_path / "x.npy", ROWS)
    files = [str(tmp_path / "x.npy"), str(tmp_path / "out.npy")]

    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_FRESH_PROCESS), *files],
        env=dict(
            os.environ, AIMASS_HOME=str(local_settings.home), PYTHONPATH=str(Path(__file__).parent)
        ),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report == {"plan": True, "torch_before_module": False, "module": "Mlp"}
    np.testing.assert_allclose(
        np.load(tmp_path / "out.npy"),
        _eager(module, {"input": ROWS})["output"],
        rtol=RTOL,
        atol=ATOL,
    )
