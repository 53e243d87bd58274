"""The Python runtime: what it refuses at save, and the suite's own teeth."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from aimass.contract.runtime import Arrays
from aimass.contract.signature import Datatype, Signature, TensorSpec
from aimass.errors import AimassError, ErrorCode
from aimass.registry import Registry
from aimass.runtimes.custom import PythonModel, PythonRuntime
from aimass.settings import Settings
from aimass.testing.checks import check_runtime


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> ModuleType:
    """Write ``source`` as module ``name`` in tmp_path and import it as a user's module."""
    path = tmp_path / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def _save(obj: Any, tmp_path: Path, **options: Any) -> None:
    directory = tmp_path / "version"
    directory.mkdir()
    PythonRuntime.save(obj, directory, sample_input={"x": np.zeros((2, 3))}, **options)


def _refusal(obj: Any, tmp_path: Path, **options: Any) -> AimassError:
    with pytest.raises(AimassError) as info:
        _save(obj, tmp_path, **options)
    return info.value


class _Echo(PythonModel):
    def predict(self, inputs: Arrays) -> Arrays:
        return {"output": inputs["x"]}


def test_class_defined_in_main_is_refused_with_code_paths_hint(tmp_path: Path) -> None:
    cls = type("MainModel", (_Echo,), {"__module__": "__main__"})
    error = _refusal(cls(), tmp_path)
    assert error.code is ErrorCode.UNSUPPORTED
    assert "__main__" in error.message and "code_paths" in error.message


def test_class_defined_in_a_function_is_refused(tmp_path: Path) -> None:
    class Local(_Echo):
        pass

    error = _refusal(Local(), tmp_path)
    assert error.code is ErrorCode.UNSUPPORTED
    assert "inside a function" in error.message


def test_a_model_with_only_predict_registers_and_loads_by_importing_its_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _module(
        tmp_path,
        monkeypatch,
        "aimass_test_doubler",
        "import aimass\n"
        "class Doubler(aimass.PythonModel):\n"
        "    def predict(self, inputs):\n"
        "        return {'output': inputs['input'] * 2}\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry.from_settings(Settings(home=tmp_path / "home"))
    try:
        module = sys.modules["aimass_test_doubler"]
        info = registry.register(module.Doubler(), name="doubler", sample_input=np.ones((2, 3)))
        assert info.manifest.options["class"] == "aimass_test_doubler:Doubler"
        assert [f.path for f in info.manifest.files] == ["python_model.json"]
        # Loaded by importing the class afresh, not from anything the instance held.
        monkeypatch.delitem(sys.modules, "aimass_test_doubler")
        loaded = registry.load("doubler", info.version)
        assert isinstance(loaded.runtime, PythonRuntime)
        assert type(loaded.runtime.model).__module__ == "aimass_test_doubler"
        np.testing.assert_array_equal(loaded.predict(np.full((1, 3), 4.0)), np.full((1, 3), 8.0))
    finally:
        registry.close()


def test_class_needing_constructor_arguments_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _module(
        tmp_path,
        monkeypatch,
        "aimass_test_needs_args",
        "from aimass.runtimes.custom import PythonModel\n"
        "class NeedsArgs(PythonModel):\n"
        "    def __init__(self, scale):\n"
        "        self.scale = scale\n"
        "    def predict(self, inputs):\n"
        "        return {'output': inputs['x'] * self.scale}\n",
    )
    error = _refusal(module.NeedsArgs(2.0), tmp_path)
    assert error.code is ErrorCode.UNSUPPORTED
    assert "no arguments" in error.message


def test_artifact_name_must_be_a_plain_file_name(tmp_path: Path) -> None:
    (tmp_path / "w.npy").write_bytes(b"")
    error = _refusal(_Echo(), tmp_path, artifacts={"../escape": str(tmp_path / "w.npy")})
    assert error.code is ErrorCode.INVALID_INPUT


def test_missing_artifact_file_is_refused(tmp_path: Path) -> None:
    error = _refusal(_Echo(), tmp_path, artifacts={"w.npy": str(tmp_path / "absent.npy")})
    assert error.code is ErrorCode.INVALID_INPUT
    assert "absent.npy" in error.message


_BATCH_DEPENDENT = """
from aimass.runtimes.custom import PythonModel


class Centering(PythonModel):
    code_paths = [__file__]

    def predict(self, inputs):
        x = inputs["x"]
        return {"centered": x - x.mean(axis=0)}
"""


def test_suite_catches_outputs_that_depend_on_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _module(tmp_path, monkeypatch, "aimass_test_centering", _BATCH_DEPENDENT)
    sample = {"x": np.arange(6.0).reshape(3, 2)}
    with pytest.raises(AssertionError, match="batch of one"):
        check_runtime(module.Centering(), sample, expected=lambda s: s["x"] - s["x"].mean(axis=0))


_RAISES_VALUE_ERROR = """
import numpy as np

from aimass.runtimes.custom import PythonModel


class Picky(PythonModel):
    code_paths = [__file__]

    def predict(self, inputs):
        x = inputs["x"]
        if x.shape[1] != 2:
            raise ValueError("need two columns")
        return {"total": x.sum(axis=1)}
"""


def test_suite_catches_a_bad_input_that_raises_a_bare_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _module(tmp_path, monkeypatch, "aimass_test_picky", _RAISES_VALUE_ERROR)
    # A signature that admits any width lets the bad input reach predict.
    signature = Signature(
        inputs=(TensorSpec(name="x", datatype=Datatype.FP64, shape=(-1, -1)),),
        outputs=(TensorSpec(name="total", datatype=Datatype.FP64, shape=(-1,)),),
    )
    sample = {"x": np.ones((3, 2))}
    with pytest.raises(AssertionError, match="ValueError"):
        check_runtime(
            module.Picky(),
            sample,
            expected=lambda s: s["x"].sum(axis=1),
            bad_inputs=[{"x": np.ones((2, 5))}],
            signature=signature,
        )
