"""The runtime conformance suite: what every registered runtime must pass.

Call :func:`check_runtime` from a test with a small fitted object, a few rows
of what its own predict takes, and a callable giving the object's primary
prediction::

    from aimass.testing.checks import check_runtime

    def test_my_classifier() -> None:
        clf = LogisticRegression().fit(X, y)
        check_runtime(
            clf,
            X[:5],
            expected=clf.predict,
            bad_inputs=[{"input": np.zeros((2, 99))}],
        )

It saves the object, loads it in a fresh Python process and compares the
primary output with ``expected``; loads it in-process and checks that a batch
of one equals the same row of the whole batch for every output; checks that
every bad input fails with INVALID_INPUT (never another exception); checks
that the signature describes what predict really returns; and checks the rest
of the contract: an unknown save option is refused, the declared capabilities
hold (probabilities for ``predict_proba``, one text input for ``embed``), the
class labels match the probability columns, and the fork policy answers for
the version and for the loaded runtime. Failures raise ``AssertionError``
naming the step.

The fresh-process step runs ``python -m aimass.testing.checks DIRECTORY
MANIFEST INPUTS OUTPUTS``; that entry point is part of this module so the
suite needs no script files.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from aimass.contract.manifest import Manifest
from aimass.contract.runtime import (
    Arrays,
    Capability,
    ForkPolicy,
    LoadOptions,
    Runtime,
    embedding_tensors,
)
from aimass.contract.signature import Datatype, Signature, as_array
from aimass.errors import AimassError, ErrorCode
from aimass.runtimes import detect_runtime, runtime_class
from aimass.runtimes.model import LoadedModel

__all__ = ["check_runtime", "save_and_load"]

_R = TypeVar("_R", bound=Runtime)

_MANIFEST = "manifest.json"
_INPUTS = "inputs.npz"
_OUTPUTS = "outputs.npz"
_CHILD_TIMEOUT = 240.0


def check_runtime(
    obj: Any,
    sample_input: Any,
    *,
    expected: Callable[[Any], Any],
    runtime: str | None = None,
    bad_inputs: Sequence[Mapping[str, np.ndarray[Any, Any]]] = (),
    rtol: float = 1e-5,
    atol: float = 1e-6,
    **save_options: Any,
) -> LoadedModel:
    """Run the conformance suite on ``obj`` and return the model loaded in-process.

    ``sample_input`` is what the object's own predict takes (at least two
    rows); ``expected(sample_input)`` is the primary output the saved model
    must reproduce. ``runtime`` names the runtime to save with (else it is
    detected). ``bad_inputs`` are named arrays that must each be refused with
    INVALID_INPUT. Extra keyword arguments are passed to the runtime's save.

    The returned model's files live in a temporary directory removed when the
    model is garbage-collected.
    """
    cls = runtime_class(runtime) if runtime is not None else detect_runtime(obj)
    root = Path(tempfile.mkdtemp(prefix="aimass-check-"))
    try:
        directory = root / "model"
        directory.mkdir()
        saved = cls.save(obj, directory, sample_input=sample_input, **save_options)
        manifest = saved.to_manifest(cls.name)
        loaded = LoadedModel("conformance", 1, cls.load(directory, manifest, LoadOptions()))
        inputs = loaded.runtime.to_inputs(sample_input)
        _check_inputs_match_signature(inputs, manifest.signature)
        outputs = loaded.predict_named(inputs)
        _check_outputs_match_signature(outputs, manifest.signature)

        primary = manifest.signature.outputs[0].name
        want = as_array(expected(sample_input))
        _assert_same(outputs[primary], want, rtol, atol, f"in-process output {primary!r}")
        fresh = _predict_in_fresh_process(root, directory, manifest, inputs)
        _assert_same(fresh[primary], want, rtol, atol, f"fresh-process output {primary!r}")
        for name, value in outputs.items():
            _assert_same(fresh[name], value, rtol, atol, f"fresh vs in-process output {name!r}")

        _check_batch_of_one(loaded, inputs, outputs, rtol, atol)
        for i, bad in enumerate(bad_inputs):
            _check_refused(loaded, bad, i)
        _check_contract(cls, loaded, outputs)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    weakref.finalize(loaded, shutil.rmtree, root, ignore_errors=True)
    return loaded


def save_and_load(
    runtime: type[_R],
    obj: Any,
    directory: Path,
    sample: Any,
    options: LoadOptions | None = None,
    **save: Any,
) -> _R:
    """``obj`` saved by ``runtime`` into ``directory`` (made if missing) and loaded back.

    No registry and no fresh process: for tests of what a runtime does with
    its own files (:func:`check_runtime` covers the round trip).
    """
    directory.mkdir(parents=True, exist_ok=True)
    manifest = runtime.save(obj, directory, sample_input=sample, **save).to_manifest(runtime.name)
    loaded = runtime.load(directory, manifest, options or LoadOptions())
    assert isinstance(loaded, runtime)
    return loaded


def _check_contract(cls: type[Runtime], loaded: LoadedModel, outputs: Arrays) -> None:
    try:
        cls.save_options({"no_such_option": 1})
    except AimassError as exc:
        assert exc.code is ErrorCode.INVALID_INPUT, f"an unknown save option gave {exc.code}"
    else:
        raise AssertionError(f"the {cls.name} runtime took an unknown save option")
    capabilities = loaded.capabilities
    assert Capability.PREDICT in capabilities, "every version predicts"
    signature = loaded.manifest.signature
    if Capability.PREDICT_PROBA in capabilities:
        assert "probabilities" in outputs, "predict_proba is declared without probabilities"
        labels = loaded.runtime.labels()
        if labels is not None:
            width = outputs["probabilities"].shape[1]
            assert len(labels) == width, f"{len(labels)} labels for {width} probabilities"
    if Capability.EMBED in capabilities:
        _, embedding = embedding_tensors(signature)
        assert [s.datatype for s in signature.inputs] == [Datatype.BYTES], "embed needs one text"
        assert outputs[embedding].ndim == 2, f"embedding {embedding!r} is not one vector a row"
    for policy in (
        cls.fork_policy(loaded.manifest),
        cls.fork_policy(loaded.manifest, loaded.runtime),
    ):
        assert isinstance(policy, ForkPolicy), f"fork_policy gave a {type(policy).__name__}"
        assert policy.shared or policy.reason, "a version that is not shared must say why"


def _check_inputs_match_signature(inputs: Arrays, signature: Signature) -> None:
    names = [s.name for s in signature.inputs]
    assert sorted(inputs) == sorted(names), (
        f"signature inputs {names} differ from the sample's {list(inputs)}"
    )
    for spec in signature.inputs:
        assert spec.shape and spec.shape[0] == -1, (
            f"input {spec.name!r} shape {spec.shape} must start with the -1 batch dimension"
        )
    rows = {len(v) for v in inputs.values()}
    assert rows and min(rows) >= 2, "sample_input must hold at least two rows"


def _check_outputs_match_signature(outputs: Arrays, signature: Signature) -> None:
    names = [s.name for s in signature.outputs]
    assert names, "the signature declares no outputs"
    assert list(outputs) == names, f"predict returned {list(outputs)}; signature says {names}"
    for spec in signature.outputs:
        value = outputs[spec.name]
        got = Datatype.from_numpy(value.dtype)
        assert got is spec.datatype, (
            f"output {spec.name!r} is {got.value}; signature says {spec.datatype.value}"
        )
        if got is Datatype.BYTES:
            assert value.dtype.kind == "O" and all(isinstance(v, str) for v in value.ravel()), (
                f"text output {spec.name!r} must be an object array of str, got {value.dtype}"
            )
        assert spec.shape and spec.shape[0] == -1, (
            f"output {spec.name!r} shape {spec.shape} must start with the -1 batch dimension"
        )
        assert len(spec.shape) == value.ndim and all(
            want in (-1, size) for want, size in zip(spec.shape, value.shape, strict=True)
        ), f"output {spec.name!r} has shape {value.shape}; signature says {spec.shape}"


def _check_batch_of_one(
    loaded: LoadedModel, inputs: Arrays, outputs: Arrays, rtol: float, atol: float
) -> None:
    rows = len(next(iter(inputs.values())))
    for i in range(rows):
        single = loaded.predict_named({k: v[i : i + 1] for k, v in inputs.items()})
        assert list(single) == list(outputs), f"row {i} alone returned {list(single)}"
        for name, value in single.items():
            _assert_same(
                value, outputs[name][i : i + 1], rtol, atol, f"batch of one, row {i}, {name!r}"
            )


def _check_refused(loaded: LoadedModel, bad: Mapping[str, np.ndarray[Any, Any]], i: int) -> None:
    try:
        loaded.predict_named(dict(bad))
    except AimassError as exc:
        assert exc.code is ErrorCode.INVALID_INPUT, (
            f"bad input #{i} gave {exc.code.value} ({exc.message}), not invalid_input"
        )
        return
    except Exception as exc:
        raise AssertionError(
            f"bad input #{i} raised {type(exc).__name__}: {exc} instead of INVALID_INPUT"
        ) from exc
    raise AssertionError(f"bad input #{i} was accepted; it must fail with INVALID_INPUT")


def _assert_same(
    actual: np.ndarray[Any, Any], desired: np.ndarray[Any, Any], rtol: float, atol: float, what: str
) -> None:
    if actual.dtype.kind in "OUS" or desired.dtype.kind in "OUS":
        np.testing.assert_array_equal(actual, desired, err_msg=what)
        return
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=what)


def _predict_in_fresh_process(
    root: Path, directory: Path, manifest: Manifest, inputs: Arrays
) -> Arrays:
    (root / _MANIFEST).write_text(manifest.model_dump_json(), encoding="utf-8")
    _write_arrays(root / _INPUTS, inputs)
    # An empty working directory keeps `python -m` from importing whatever
    # the caller's cwd holds: the child must find the model's code on its own.
    workdir = root / "cwd"
    workdir.mkdir()
    args = [str(directory), str(root / _MANIFEST), str(root / _INPUTS), str(root / _OUTPUTS)]
    proc = subprocess.run(
        [sys.executable, "-m", "aimass.testing.checks", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=_CHILD_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, (
        f"loading in a fresh process failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    )
    return _read_arrays(root / _OUTPUTS)


def _write_arrays(path: Path, arrays: Arrays) -> None:
    # Text travels as fixed-width unicode so the .npz needs no pickle.
    encoded: dict[str, Any] = {
        k: v.astype(str) if v.dtype.kind == "O" else v for k, v in arrays.items()
    }
    np.savez(path, allow_pickle=False, **encoded)


def _read_arrays(path: Path) -> Arrays:
    with np.load(path, allow_pickle=False) as data:
        return {name: as_array(data[name]) for name in data.files}


def _child(argv: Sequence[str]) -> int:
    """Load a saved version in this (fresh) process and predict on saved inputs."""
    directory, manifest_path, inputs_path, outputs_path = (Path(a) for a in argv)
    manifest = Manifest.model_validate_json(manifest_path.read_text(encoding="utf-8"))
    runtime = runtime_class(manifest.runtime).load(directory, manifest, LoadOptions())
    outputs = LoadedModel("conformance", 1, runtime).predict_named(_read_arrays(inputs_path))
    _write_arrays(outputs_path, outputs)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
