"""Pickles: every version that holds one is unsafe, and with pickles off nothing opens one.

Also the other half of what a pickle-style format hides: a model that refers
to code only the registering process can import is refused when registered.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from aimass.errors import AimassError, ErrorCode
from aimass.registry import Registry
from aimass.runtimes.pickles import is_pickled
from aimass.settings import RegistrySettings, Settings
from tests.conftest import PickleTrap


def _registry(home: Path, *, allow_pickle: bool) -> Registry:
    return Registry.from_settings(
        Settings(home=home, registry=RegistrySettings(allow_pickle=allow_pickle))
    )


@pytest.fixture
def registries(tmp_path: Path) -> Iterator[tuple[Registry, Registry]]:
    """One library opened twice: with pickles allowed, and with pickles off."""
    lenient = _registry(tmp_path / "home", allow_pickle=True)
    strict = _registry(tmp_path / "home", allow_pickle=False)
    yield lenient, strict
    lenient.close()
    strict.close()


_WRITERS: dict[str, Callable[[Path], object]] = {
    "joblib": lambda p: joblib.dump([1, 2], p),
    "joblib-zlib": lambda p: joblib.dump([1, 2], p, compress=3),
    "joblib-gzip": lambda p: joblib.dump([1, 2], p, compress=("gzip", 3)),
    "joblib-bz2": lambda p: joblib.dump([1, 2], p, compress=("bz2", 3)),
    "joblib-xz": lambda p: joblib.dump([1, 2], p, compress=("xz", 3)),
    "joblib-lzma": lambda p: joblib.dump([1, 2], p, compress=("lzma", 3)),
    "pickle-2": lambda p: p.write_bytes(pickle.dumps({"a": 1}, protocol=2)),
    "numpy-objects": lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
    "npz-objects": lambda p: np.savez(p, a=np.array([{"a": 1}], dtype=object)),
}


@pytest.mark.parametrize("kind", sorted(_WRITERS))
def test_a_pickle_is_found_by_its_bytes(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "model.data"
    _WRITERS[kind](path)
    written = next(tmp_path.iterdir())  # numpy adds its own suffix
    assert is_pickled(written)


def test_a_torch_archive_holds_a_pickle(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.ones(2)}, tmp_path / "weights.pt")
    assert is_pickled(tmp_path / "weights.pt")


def test_safe_formats_are_not_pickles(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"w": np.ones((4, 4), dtype=np.float32)}, tmp_path / "w.safetensors")
    np.save(tmp_path / "floats.npy", np.ones(3))
    (tmp_path / "config.json").write_text('{"a": 1}')
    assert not any(is_pickled(p) for p in tmp_path.iterdir())


def _pickled_model_module(tmp_path: Path) -> None:
    """A user's module: a Python model whose load() unpickles its artifact."""
    (tmp_path / "pickled_model.py").write_text(
        textwrap.dedent(
            """
            import joblib
            from aimass import PythonModel

            class Pickled(PythonModel):
                def load(self, artifacts):
                    self.state = joblib.load(artifacts / "state.joblib")

                def predict(self, inputs):
                    return {"output": inputs["input"] * 2}
            """
        ),
        encoding="utf-8",
    )


def test_a_version_holding_a_pickle_is_unsafe_and_refused_without_pickles(
    registries: tuple[Registry, Registry],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pickle_trap: PickleTrap,
) -> None:
    lenient, strict = registries
    _pickled_model_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import pickled_model  # type: ignore[import-not-found]

    state = tmp_path / "state.joblib"
    joblib.dump({"scale": 2}, state)
    info = lenient.register(
        pickled_model.Pickled(),
        "pickled",
        sample_input=np.ones((2, 2)),
        artifacts={"state.joblib": str(state)},
    )
    assert info.manifest.runtime == "python" and info.manifest.unsafe

    joblib.dump(pickle_trap, state)
    with pytest.raises(AimassError) as loading:
        strict.load("pickled", info.version)
    assert loading.value.code is ErrorCode.UNSAFE_FORMAT
    assert "artifacts/state.joblib" in loading.value.message

    with pytest.raises(AimassError) as registering:
        strict.register(
            pickled_model.Pickled(),
            "trap",
            sample_input=np.ones((2, 2)),
            artifacts={"state.joblib": str(state)},
        )
    assert registering.value.code is ErrorCode.UNSAFE_FORMAT
    assert "pickles are off" in registering.value.message
    assert not pickle_trap.marker.exists()


def test_a_pickle_file_given_to_register_is_refused_unread_without_pickles(
    registries: tuple[Registry, Registry], tmp_path: Path, pickle_trap: PickleTrap
) -> None:
    _, strict = registries
    path = tmp_path / "clf.pt2"
    joblib.dump(pickle_trap, path)
    with pytest.raises(AimassError) as caught:
        strict.register(path, "clf")
    assert caught.value.code is ErrorCode.UNSAFE_FORMAT
    assert "AIMASS_REGISTRY__ALLOW_PICKLE=true" in caught.value.message
    assert not pickle_trap.marker.exists()


def test_a_model_file_the_named_runtime_does_not_read_is_invalid_input(
    registries: tuple[Registry, Registry], tmp_path: Path
) -> None:
    lenient, _ = registries
    text = tmp_path / "notes.txt"
    text.write_text("not a model\n")
    with pytest.raises(AimassError) as caught:
        lenient.register(text, "notes", runtime="onnx")
    assert caught.value.code is ErrorCode.INVALID_INPUT and "onnx" in caught.value.message
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x01\x02 not a protobuf")
    with pytest.raises(AimassError) as parsing:
        lenient.register(garbage, "garbage")
    assert parsing.value.code is ErrorCode.INVALID_INPUT
    assert "is not an ONNX model" in parsing.value.message
    program = tmp_path / "garbage.pt2"
    program.write_bytes(b"not a zip archive")
    with pytest.raises(AimassError) as exporting:
        lenient.register(program, "garbage", sample_input=np.ones((1, 2), dtype=np.float32))
    assert exporting.value.code is ErrorCode.INVALID_INPUT
    assert "is not a torch.export program" in exporting.value.message


def _register_in_main(tmp_path: Path, function: str) -> subprocess.CompletedProcess[str]:
    """Register, from a script's ``__main__``, a Pipeline whose FunctionTransformer uses it."""
    script = textwrap.dedent(
        f"""
        import numpy as np
        import aimass
        from aimass.errors import AimassError
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import FunctionTransformer

        def double(x):
            return x * 2

        x = np.random.default_rng(0).random((20, 3))
        y = (x[:, 0] > 0.5).astype(int)
        model = make_pipeline(FunctionTransformer({function}), LogisticRegression()).fit(x, y)
        try:
            aimass.register(model, "main-fn", sample_input=x[:2])
        except AimassError as exc:
            raise SystemExit(exc.message)
        """
    )
    env = {**os.environ, "AIMASS_HOME": str(tmp_path / "home")}
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("function", "named"),
    [("double", "function double of __main__"), ("lambda v: v", "a lambda (in __main__)")],
)
def test_a_pipeline_using_code_of_main_is_refused(
    function: str, named: str, tmp_path: Path
) -> None:
    done = _register_in_main(tmp_path, function)
    assert done.returncode != 0
    message = done.stderr.strip()
    assert "Traceback" not in message and len(message.splitlines()) == 1
    assert named in message and "no other process can import" in message
    assert "module the serving process can import" in message


def test_a_pipeline_using_importable_functions_registers(
    registries: tuple[Registry, Registry],
) -> None:
    lenient, _ = registries
    x = np.random.default_rng(0).random((20, 3))
    y = (x[:, 0] > 0.5).astype(int)
    model = make_pipeline(FunctionTransformer(np.log1p), LogisticRegression()).fit(x, y)
    info = lenient.register(model, "log1p", sample_input=x[:2])
    assert lenient.load("log1p", info.version).predict(x).tolist() == model.predict(x).tolist()
