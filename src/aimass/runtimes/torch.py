"""PyTorch ``nn.Module`` models.

Three formats, tried in this order unless ``format=`` forces one:

``state_dict``
    The weights in safetensors plus the module's class path and JSON init
    kwargs (``init_kwargs=``). Nothing runs on load but the class's own
    ``__init__``, so it is safe, but the class must be importable where the
    model is served (a class defined in ``__main__`` or inside a function is
    refused).
``export``
    A ``torch.export`` program traced on the sample input with a dynamic batch
    dimension: no class code is needed at load. Its weights are pickled, so the
    manifest says ``unsafe``.
``torchscript``
    ``torch.jit.script``, else ``torch.jit.trace``, for modules that
    ``torch.export`` cannot capture. The archive holds pickles too: ``unsafe``.

Every format is checked at save time: the artifact is reloaded in process and
must reproduce the module's outputs on the sample (and on a batch of another
size), otherwise the next format is tried.

A ``.pt2`` file written by ``torch.export.save`` registers as ``export``: it
is copied and run once on the sample to learn its signature.

A tensor or array sample becomes the single input ``input``; a mapping sample
gives one input per key, passed to ``forward`` as keyword arguments. A tensor
output is ``output``; a tuple of tensors gives ``output_0``, ``output_1``…; a
mapping of tensors keeps its keys.

A module whose inputs are all float tensors also gets an ONNX *serving plan*
(:mod:`aimass.runtimes.plan`) when the ``onnx`` extra is installed: exported
by ``torch.onnx`` (the TorchScript-based exporter, which takes a fraction of a
second where the dynamo one takes seconds) with a dynamic batch dimension,
and kept only if onnxruntime reproduces the module within the same tolerance
as the artifact check (rtol 1e-5, atol 1e-6) on the verification set. A
version with a plan is served by onnxruntime in one call that releases the
GIL once, instead of one dispatch per operator, and loads without importing
torch; ``module`` is then loaded on first use. Turn plans off with
``AIMASS_REGISTRY__ONNX_SERVING_PLANS=false`` or the save option
``onnx_serving_plan=False``.
"""

from __future__ import annotations

import io
import shutil
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from typing_extensions import override

from aimass.errors import AimassError, ErrorCode
from aimass.registry.manifest import Manifest
from aimass.registry.signature import Signature, as_array
from aimass.runtimes.base import (
    Arrays,
    Lazy,
    LoadOptions,
    Runtime,
    Saved,
    artifact_path,
    class_path,
    import_class,
    refuse_pickle,
    require,
)
from aimass.runtimes.plan import Plan, make_plan, open_plan

__all__ = ["FORMATS", "TorchRuntime"]

_IMPORTABLE_HINT = (
    "define it at the top level of an importable module, or save with format='export'"
)

FORMATS = ("state_dict", "export", "torchscript")
"""The formats a module can be saved in, in order of preference."""

# How closely a reloaded artifact or a serving plan must reproduce the module.
RTOL = 1e-5
ATOL = 1e-6
_FILES = {"state_dict": "model.safetensors", "export": "model.pt2", "torchscript": "model.pt"}
# Frameworks with their own runtime: detection must leave their modules to it.
_OTHER_RUNTIMES = ("transformers.", "sentence_transformers.")


class TorchRuntime(Runtime):
    """A ``torch.nn.Module`` run on CPU in eval mode under ``torch.inference_mode``."""

    name = "torch"
    extra = "torch"

    def __init__(
        self,
        manifest: Manifest,
        directory: Path,
        options: LoadOptions,
        *,
        module: Callable[..., Any] | None = None,
        plan: Plan | None = None,
    ) -> None:
        super().__init__(manifest)
        self.plan = plan
        self._module: Lazy[Callable[..., Any]] = Lazy(
            lambda: _load_module(directory, manifest, options, lazily=True), module
        )
        self._single = manifest.options.get("single_input", True)

    @property
    def module(self) -> Callable[..., Any]:
        """The module, loaded from the version's files on first use if a plan serves."""
        return self._module.get()

    @override
    @classmethod
    def handles(cls, obj: Any) -> bool:
        if isinstance(obj, Path):
            return obj.is_file() and obj.suffix == ".pt2"
        modules = [c.__module__ for c in type(obj).__mro__]
        if any(m.startswith(_OTHER_RUNTIMES) for m in modules):
            return False
        return any(
            c.__module__ == "torch.nn.modules.module" and c.__name__ == "Module"
            for c in type(obj).__mro__
        )

    @override
    @classmethod
    def save(cls, obj: Any, directory: Path, *, sample_input: Any = None, **options: Any) -> Saved:
        torch = require("torch", cls.extra)
        if sample_input is None:
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                "a torch module does not declare its input shape: pass sample_input= "
                "(a tensor or array with a batch dimension, or a mapping of them)",
            )
        if isinstance(obj, Path):
            return _save_program_file(obj, directory, sample_input, torch.__version__)
        forced = options.get("format")
        if forced is not None and forced not in FORMATS:
            raise AimassError(
                ErrorCode.UNSUPPORTED, f"unknown torch format {forced!r}; known: {list(FORMATS)}"
            )
        inputs = _sample_arrays(sample_input)
        single = not isinstance(sample_input, Mapping)
        init_kwargs = dict(options.get("init_kwargs") or {})
        saved_options: dict[str, Any] = {"single_input": single}
        was_training = obj.training
        obj.eval()
        try:
            expected = _run_sample(obj, inputs, single)
            signature = Signature.from_samples(inputs, expected)
            formats = (forced,) if forced else FORMATS
            fmt, extra = _save_first(obj, directory, formats, inputs, expected, single, init_kwargs)
            if options.get("onnx_serving_plan", True):
                plan = _make_plan(obj, inputs, directory, signature, single)
                if plan is not None:
                    saved_options["onnx_plan"] = plan
        finally:
            obj.train(was_training)
        saved_options.update(extra)
        if options.get("threads") is not None:
            saved_options["threads"] = int(options["threads"])
        return Saved(
            framework="torch",
            framework_version=torch.__version__,
            format=fmt,
            signature=signature,
            unsafe=fmt != "state_dict",
            options=saved_options,
        )

    @override
    @classmethod
    def load(cls, directory: Path, manifest: Manifest, options: LoadOptions) -> TorchRuntime:
        if manifest.format not in FORMATS:
            raise AimassError(ErrorCode.UNSUPPORTED, f"unknown torch format {manifest.format!r}")
        plan = open_plan(directory, manifest, int(manifest.options.get("threads", 1)))
        if plan is not None:
            return cls(manifest, directory, options, plan=plan)
        module = _load_module(directory, manifest, options)
        return cls(manifest, directory, options, module=module)

    @override
    def predict(self, inputs: Arrays) -> Arrays:
        if self.plan is not None:
            return self.plan.run(inputs)
        return _run(self.module, inputs, single=self._single)


def _load_module(
    directory: Path, manifest: Manifest, options: LoadOptions, *, lazily: bool = False
) -> Any:
    """The module; ``lazily`` (after the version loaded) checks its file again first."""
    torch = require("torch", TorchRuntime.extra)
    fmt = manifest.format
    if fmt != "state_dict":
        refuse_pickle(options, f"this torch model ({fmt})")
    # Threads are process-wide in torch: only a model that asked for a
    # count changes it, and only when it is loaded, never on import.
    threads = manifest.options.get("threads")
    if threads is not None:
        torch.set_num_threads(int(threads))
    name = _FILES[fmt]
    path = artifact_path(directory, name, manifest, recheck=lazily)
    return _LOADERS[fmt](path, manifest.options)


def _sample_arrays(sample: Any) -> Arrays:
    if isinstance(sample, Mapping):
        arrays = {str(k): as_array(v) for k, v in sample.items()}
    else:
        arrays = {"input": as_array(sample)}
    for name, value in arrays.items():
        if value.dtype.kind in ("U", "S", "O") or value.ndim == 0:
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"sample '{name}' must be a numeric tensor with a batch dimension",
            )
    return arrays


def _run_sample(module: Callable[..., Any], inputs: Arrays, single: bool) -> Arrays:
    try:
        return _run(module, inputs, single=single)
    except AimassError:
        raise
    except Exception as exc:
        raise AimassError(
            ErrorCode.INVALID_INPUT, f"the module failed on sample_input: {exc}"
        ) from exc


def _tensors(inputs: Arrays) -> dict[str, Any]:
    import torch

    # from_numpy shares memory but refuses negative strides.
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}


def _call(module: Callable[..., Any], tensors: dict[str, Any], single: bool) -> Any:
    if single:
        return module(next(iter(tensors.values())))
    return module(**tensors)


def _run(module: Callable[..., Any], inputs: Arrays, *, single: bool) -> Arrays:
    import torch

    with torch.inference_mode():
        return _outputs(_call(module, _tensors(inputs), single))


def _outputs(out: Any) -> Arrays:
    import torch

    if isinstance(out, torch.Tensor):
        return {"output": as_array(out)}
    if isinstance(out, tuple | list) and all(isinstance(t, torch.Tensor) for t in out):
        return {f"output_{i}": as_array(t) for i, t in enumerate(out)}
    if isinstance(out, Mapping) and all(isinstance(t, torch.Tensor) for t in out.values()):
        return {str(k): as_array(t) for k, t in out.items()}
    raise AimassError(
        ErrorCode.UNSUPPORTED,
        f"forward returned a {type(out).__name__}; aimass serves a tensor, "
        "a tuple of tensors or a mapping of tensors",
    )


def _other_batch(inputs: Arrays) -> Arrays:
    """The sample twice over: a second batch size that shows a specialised batch dimension."""
    return {k: np.concatenate([v, v]) for k, v in inputs.items()}


def _save_first(
    obj: Any,
    directory: Path,
    formats: tuple[str, ...],
    inputs: Arrays,
    expected: Arrays,
    single: bool,
    init_kwargs: dict[str, Any],
) -> tuple[str, dict[str, Any]]:
    """Save in the first of ``formats`` whose reloaded artifact reproduces ``obj``."""
    failures: list[str] = []
    for fmt in formats:
        path = directory / _FILES[fmt]
        try:
            extra = _SAVERS[fmt](obj, path, inputs, single, init_kwargs)
            _verify(_LOADERS[fmt](path, extra), inputs, expected, single)
        except Exception as exc:
            path.unlink(missing_ok=True)
            failures.append(f"{fmt}: {exc}")
            continue
        return fmt, extra
    raise AimassError(
        ErrorCode.UNSUPPORTED, "could not save this torch module; " + "; ".join(failures)
    )


def _verify(module: Callable[..., Any], inputs: Arrays, expected: Arrays, single: bool) -> None:
    doubled = {k: np.concatenate([v, v]) for k, v in expected.items()}
    for sample, want in ((inputs, expected), (_other_batch(inputs), doubled)):
        got = _run(module, sample, single=single)
        if got.keys() != want.keys() or not all(
            got[k].shape == want[k].shape and np.allclose(got[k], want[k], rtol=RTOL, atol=ATOL)
            for k in want
        ):
            raise AimassError(
                ErrorCode.UNSUPPORTED, "the reloaded artifact does not reproduce the module"
            )


def _save_program_file(path: Path, directory: Path, sample_input: Any, version: str) -> Saved:
    """Register a ``.pt2`` file written by ``torch.export.save``: copy it, then describe it."""
    target = directory / _FILES["export"]
    shutil.copyfile(path, target)
    inputs = _sample_arrays(sample_input)
    single = not isinstance(sample_input, Mapping)
    module = _load_export(target, {})
    try:
        outputs = _run_sample(module, inputs, single)
        _verify(module, inputs, outputs, single)
    except Exception as exc:
        target.unlink()
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"{path.name} does not run on the sample with a variable batch size: {exc}",
        ) from exc
    return Saved(
        framework="torch",
        framework_version=version,
        format="export",
        signature=Signature.from_samples(inputs, outputs),
        unsafe=True,
        options={"single_input": single},
    )


# --- state_dict ---------------------------------------------------------------


def _save_state_dict(
    obj: Any, path: Path, inputs: Arrays, single: bool, init_kwargs: dict[str, Any]
) -> dict[str, Any]:
    import json

    from safetensors.torch import save_model

    cls_path = class_path(type(obj), hint=_IMPORTABLE_HINT)
    # Round-trip through JSON now so a kwarg that cannot be recorded fails here.
    kwargs = json.loads(json.dumps(init_kwargs))
    save_model(obj, str(path))
    return {"class": cls_path, "init_kwargs": kwargs}


def _load_state_dict(path: Path, options: Mapping[str, Any]) -> Any:
    import torch
    from safetensors.torch import load_model

    module_cls = import_class(options["class"], torch.nn.Module, hint=_IMPORTABLE_HINT)
    module = module_cls(**options.get("init_kwargs", {}))
    load_model(module, str(path), strict=True)
    return module.eval()


# --- export -------------------------------------------------------------------


def _save_export(
    obj: Any, path: Path, inputs: Arrays, single: bool, init_kwargs: dict[str, Any]
) -> dict[str, Any]:
    import torch
    from torch.export import Dim

    # export specialises a dimension of size 1, so trace on at least two rows.
    sample = inputs if len(next(iter(inputs.values()))) > 1 else _other_batch(inputs)
    tensors = _tensors(sample)
    batch = Dim("batch")
    if single:
        program = torch.export.export(
            obj, (next(iter(tensors.values())),), dynamic_shapes=({0: batch},), strict=False
        )
    else:
        program = torch.export.export(
            obj,
            (),
            kwargs=tensors,
            dynamic_shapes={k: {0: batch} for k in tensors},
            strict=False,
        )
    torch.export.save(program, path)
    return {}


def _load_export(path: Path, options: Mapping[str, Any]) -> Any:
    import torch

    return torch.export.load(path).module()


# --- torchscript --------------------------------------------------------------


def _save_torchscript(
    obj: Any, path: Path, inputs: Arrays, single: bool, init_kwargs: dict[str, Any]
) -> dict[str, Any]:
    import torch

    # TorchScript is deprecated; it stays as the last resort for modules
    # torch.export cannot capture, so its deprecation warnings are expected.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            scripted = torch.jit.script(obj)
            method = "script"
        except Exception:
            tensors = _tensors(inputs)
            if single:
                scripted = torch.jit.trace(obj, (next(iter(tensors.values())),))  # type: ignore[no-untyped-call]
            else:
                scripted = torch.jit.trace(obj, example_kwarg_inputs=tensors)  # type: ignore[no-untyped-call]
            method = "trace"
        torch.jit.save(scripted, str(path))
    return {"torchscript": method}


def _load_torchscript(path: Path, options: Mapping[str, Any]) -> Any:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()  # type: ignore[no-untyped-call]


# --- ONNX serving plan --------------------------------------------------------


def _make_plan(
    obj: Any, inputs: Arrays, directory: Path, signature: Signature, single: bool
) -> dict[str, Any] | None:
    """The plan's manifest entry (see the module docstring), or None when the module gets none."""
    if any(value.dtype.kind != "f" for value in inputs.values()):
        return None  # token ids and the like: the verification rows would be meaningless
    try:
        import onnx
    except ImportError:  # the onnx extra is not installed: served by torch
        return None
    import torch

    names = list(inputs)
    outputs = [spec.name for spec in signature.outputs]

    def convert(rows: Arrays) -> Any:
        tensors = _tensors({name: value[:2] for name, value in rows.items()})
        args = (next(iter(tensors.values())),) if single else ()
        buffer = io.BytesIO()
        # The TorchScript-based exporter is deprecated but seconds faster; its
        # warnings say so on every call.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                obj,
                args,
                buffer,  # type: ignore[arg-type]  # the TorchScript exporter takes files
                kwargs=None if single else tensors,
                input_names=names,
                output_names=outputs,
                dynamic_axes={name: {0: "batch"} for name in names + outputs},
                dynamo=False,
            )
        return onnx.load_model_from_string(buffer.getvalue())

    return make_plan(
        convert,
        inputs,
        directory,
        signature,
        lambda rows: _run(obj, rows, single=single),
        rtol=RTOL,
        atol=ATOL,
        converter=f"torch.onnx {torch.__version__}",
    )


_SAVERS: dict[str, Callable[[Any, Path, Arrays, bool, dict[str, Any]], dict[str, Any]]] = {
    "state_dict": _save_state_dict,
    "export": _save_export,
    "torchscript": _save_torchscript,
}
_LOADERS: dict[str, Callable[[Path, Mapping[str, Any]], Any]] = {
    "state_dict": _load_state_dict,
    "export": _load_export,
    "torchscript": _load_torchscript,
}
