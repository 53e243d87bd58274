"""The ONNX runtime beyond conformance: files, refusals, session options, fixed batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from aimass.contract.manifest import Manifest
from aimass.contract.runtime import LoadOptions, Saved
from aimass.errors import AimassError, ErrorCode
from aimass.runtimes import detect_runtime
from aimass.runtimes.onnx import OnnxRuntime

# onnx writes its newest IR version by default; onnxruntime reads up to 10 here.
_IR = 10
_OPSET = [helper.make_opsetid("", 17)]
_WEIGHTS = np.array([[1.0, -1.0], [0.5, 2.0], [0.0, 3.0]], dtype=np.float32)


def _matmul(batch: int | str) -> onnx.ModelProto:
    """Y = X @ W with the given first dimension (a number is fixed, a name dynamic)."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "matmul",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [batch, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [batch, 2])],
        [numpy_helper.from_array(_WEIGHTS, "W")],
    )
    return helper.make_model(graph, opset_imports=_OPSET, ir_version=_IR)


def _save_and_load(obj: Any, tmp_path: Path, **options: Any) -> tuple[Saved, OnnxRuntime]:
    directory = tmp_path / "version"
    directory.mkdir(parents=True)
    saved = OnnxRuntime.save(obj, directory, **options)
    manifest = Manifest(
        runtime="onnx",
        framework=saved.framework,
        framework_version=saved.framework_version,
        format=saved.format,
        signature=saved.signature,
        options=saved.options,
    )
    return saved, OnnxRuntime.load(directory, manifest, LoadOptions())


def test_zipmap_output_is_refused_with_a_hint(tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    clf = LogisticRegression().fit(x, x[:, 0] > 0)
    with pytest.raises(AimassError) as info:
        OnnxRuntime.save(to_onnx(clf, x[:1]), tmp_path)
    assert info.value.code is ErrorCode.UNSUPPORTED
    assert "zipmap" in info.value.message


def test_onnx_file_is_detected_and_saved_from_its_path(tmp_path: Path) -> None:
    path = tmp_path / "matmul.onnx"
    onnx.save_model(_matmul("batch"), str(path))
    assert detect_runtime(path) is OnnxRuntime
    saved, runtime = _save_and_load(path, tmp_path)
    assert [s.shape for s in saved.signature.inputs] == [(-1, 3)]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(runtime.predict({"X": x})["Y"], x @ _WEIGHTS)


def test_intra_op_threads_default_to_one_and_follow_the_option(tmp_path: Path) -> None:
    saved, runtime = _save_and_load(_matmul("batch"), tmp_path / "a", intra_op_threads=2)
    assert saved.options["intra_op_threads"] == 2
    assert runtime.session.get_session_options().intra_op_num_threads == 2
    saved, runtime = _save_and_load(_matmul("batch"), tmp_path / "b")
    assert runtime.session.get_session_options().intra_op_num_threads == 1


def test_graph_with_a_fixed_batch_of_one_runs_row_by_row(tmp_path: Path) -> None:
    saved, runtime = _save_and_load(_matmul(1), tmp_path)
    assert saved.signature.inputs[0].shape == (-1, 3)
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_allclose(runtime.predict({"X": x})["Y"], x @ _WEIGHTS)


def test_model_onnxruntime_cannot_run_is_refused_at_save(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Frobnicate", ["X"], ["Y"], domain="com.example")],
        "custom_op",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 3])],
    )
    opsets = [*_OPSET, helper.make_opsetid("com.example", 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=_IR)
    with pytest.raises(AimassError) as info:
        OnnxRuntime.save(model, tmp_path)
    assert info.value.code is ErrorCode.UNSUPPORTED
    assert "cannot run this model" in info.value.message


def test_invalid_graph_is_refused_as_invalid_input(tmp_path: Path) -> None:
    model = _matmul("batch")
    model.graph.node[0].input[1] = "nowhere"
    with pytest.raises(AimassError) as info:
        OnnxRuntime.save(model, tmp_path)
    assert info.value.code is ErrorCode.INVALID_INPUT


def test_graph_with_a_fixed_batch_above_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AimassError) as info:
        OnnxRuntime.save(_matmul(4), tmp_path)
    assert info.value.code is ErrorCode.UNSUPPORTED
    assert "dynamic first axis" in info.value.message


def test_text_tensors_round_trip_as_bytes(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["same"])],
        "echo",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
        [helper.make_tensor_value_info("same", TensorProto.STRING, ["batch"])],
    )
    model = helper.make_model(graph, opset_imports=_OPSET, ir_version=_IR)
    saved, runtime = _save_and_load(model, tmp_path)
    assert saved.signature.outputs[0].datatype == "BYTES"
    out = runtime.predict({"text": np.array(["héllo", ""], dtype=object)})["same"]
    assert out.dtype == object and out.tolist() == ["héllo", ""]
