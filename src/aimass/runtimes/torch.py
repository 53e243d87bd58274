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

import importlib.util
import shutil
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from typing_extensions import override

from aimass.contract.manifest import Manifest
from aimass.contract.runtime import Arrays, ForkPolicy, LoadOptions, Runtime, Saved, SaveOptions
from aimass.contract.signature import Signature, as_array
from aimass.convert.plan import Plan, open_plan
from aimass.convert.torch import make_torch_plan
from aimass.errors import AimassError, ErrorCode
from aimass.runtimes.loading import Lazy, artifact_path, refuse_pickle, require
from aimass.runtimes.torch_formats import (
    ATOL,
    FILES,
    FORMATS,
    LOADERS,
    RTOL,
    load_export,
    run,
    save_first,
    verify,
)

__all__ = ["FORMATS", "TorchOptions", "TorchRuntime", "torch_fork_guard"]

# Frameworks with their own runtime: detection must leave their modules to it.
_OTHER_RUNTIMES = ("transformers.", "sentence_transformers.")


class TorchOptions(SaveOptions):
    """How a PyTorch module is saved and run."""

    format: Literal["state_dict", "export", "torchscript"] | None = None
    """Force one format instead of trying them in order."""
    init_kwargs: dict[str, Any] = Field(default_factory=dict)
    """JSON keyword arguments of the module's ``__init__`` (the state_dict format)."""
    threads: int | None = Field(default=None, ge=1)
    """torch's intra-op threads while this model is loaded (process-wide in torch)."""
    onnx_serving_plan: bool = True
    """Also save a verified ONNX serving plan when the module converts (the onnx extra)."""


def torch_fork_guard(workers: int) -> Callable[[], None]:
    """Keep torch's OpenMP pool from starting before a fork; what each worker runs after it.

    A forked child inherits the pool as threads that do not exist, and its
    first parallel op hangs; so the supervisor runs torch on one thread while
    it loads, and each worker starts its own pool with its share of the CPUs,
    and re-seeds torch's generator (a fork copies it into every worker alike).
    """
    try:
        import torch
    except ImportError:  # the load will report the missing extra
        return lambda: None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    share = max(1, threads // workers)

    def after_fork() -> None:
        torch.seed()
        torch.set_num_threads(share)

    return after_fork


class TorchRuntime(Runtime):
    """A ``torch.nn.Module`` run on CPU in eval mode under ``torch.inference_mode``."""

    name = "torch"
    extra = "torch"
    Options = TorchOptions

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
    def write(cls, obj: Any, directory: Path, *, sample_input: Any, options: TorchOptions) -> Saved:
        torch = require("torch", cls.extra)
        if sample_input is None:
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                "a torch module does not declare its input shape: pass sample_input= "
                "(a tensor or array with a batch dimension, or a mapping of them)",
            )
        if isinstance(obj, Path):
            return _save_program_file(obj, directory, sample_input, torch.__version__)
        inputs = _sample_arrays(sample_input)
        single = not isinstance(sample_input, Mapping)
        saved_options: dict[str, Any] = {"single_input": single}
        was_training = obj.training
        obj.eval()
        try:
            expected = _run_sample(obj, inputs, single)
            signature = Signature.from_samples(inputs, expected)
            formats = (options.format,) if options.format else FORMATS
            fmt, extra = save_first(
                obj, directory, formats, inputs, expected, single, dict(options.init_kwargs)
            )
            if options.onnx_serving_plan:
                plan = make_torch_plan(
                    obj,
                    inputs,
                    directory,
                    signature,
                    lambda rows: run(obj, rows, single=single),
                    single=single,
                    rtol=RTOL,
                    atol=ATOL,
                )
                if plan is not None:
                    saved_options["onnx_plan"] = plan
        finally:
            obj.train(was_training)
        saved_options.update(extra)
        if options.threads is not None:
            saved_options["threads"] = options.threads
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
    @classmethod
    def unpickles_on_load(cls, manifest: Manifest) -> bool:
        # A plan serves without the module; _load_module guards the pickle.
        return "onnx_plan" not in manifest.options

    @override
    @classmethod
    def fork_policy(cls, manifest: Manifest, loaded: Runtime | None = None) -> ForkPolicy:
        if manifest.options.get("threads") not in (None, 1):
            return ForkPolicy(
                shared=False,
                reason="it sets torch's thread count, which starts a pool that does not "
                "survive a fork",
            )
        # A version served by its ONNX plan never imports torch.
        if isinstance(loaded, TorchRuntime):
            planned = loaded.plan is not None
        else:
            planned = (
                "onnx_plan" in manifest.options
                and importlib.util.find_spec("onnxruntime") is not None
            )
        return ForkPolicy() if planned else ForkPolicy(prepare=torch_fork_guard)

    @override
    def predict(self, inputs: Arrays) -> Arrays:
        if self.plan is not None:
            return self.plan.run(inputs)
        return run(self.module, inputs, single=self._single)


def _load_module(
    directory: Path, manifest: Manifest, options: LoadOptions, *, lazily: bool = False
) -> Any:
    """The module; ``lazily`` (after the version loaded) checks its file again first."""
    torch = require("torch", TorchRuntime.extra)
    fmt = manifest.format
    if fmt != "state_dict":
        refuse_pickle(options.allow_pickle, f"this torch model ({fmt})")
    # Threads are process-wide in torch: only a model that asked for a
    # count changes it, and only when it is loaded, never on import.
    threads = manifest.options.get("threads")
    if threads is not None:
        torch.set_num_threads(int(threads))
    path = artifact_path(directory, FILES[fmt], manifest, recheck=lazily)
    return LOADERS[fmt](path, manifest.options)


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
        return run(module, inputs, single=single)
    except AimassError:
        raise
    except Exception as exc:
        raise AimassError(
            ErrorCode.INVALID_INPUT, f"the module failed on sample_input: {exc}"
        ) from exc


def _save_program_file(path: Path, directory: Path, sample_input: Any, version: str) -> Saved:
    """Register a ``.pt2`` file written by ``torch.export.save``: copy it, then describe it."""
    target = directory / FILES["export"]
    shutil.copyfile(path, target)
    inputs = _sample_arrays(sample_input)
    single = not isinstance(sample_input, Mapping)
    # A program is a zip archive; torch logs a traceback for any other file.
    if not zipfile.is_zipfile(target):
        target.unlink()
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"{path.name} is not a torch.export program (not a zip archive)",
        )
    module = load_export(target, {})
    try:
        outputs = _run_sample(module, inputs, single)
        verify(module, inputs, outputs, single)
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
