"""The three formats a PyTorch module is saved in, and running a module on named arrays.

``state_dict`` (safetensors weights plus the class path), ``export`` (a
``torch.export`` program) and ``torchscript``: each has a saver and a loader,
and :func:`save_first` keeps the first format whose reloaded artifact
reproduces the module (see :mod:`aimass.runtimes.torch` for the order and why).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aimass.contract.runtime import Arrays
from aimass.contract.signature import as_array
from aimass.errors import AimassError, ErrorCode
from aimass.runtimes.loading import class_path, import_class

__all__ = [
    "ATOL",
    "FILES",
    "FORMATS",
    "IMPORTABLE_HINT",
    "LOADERS",
    "RTOL",
    "load_export",
    "other_batch",
    "run",
    "save_first",
    "tensors",
    "verify",
]

FORMATS = ("state_dict", "export", "torchscript")
"""The formats a module can be saved in, in order of preference."""

FILES = {"state_dict": "model.safetensors", "export": "model.pt2", "torchscript": "model.pt"}
"""The artifact file of each format."""

# How closely a reloaded artifact or a serving plan must reproduce the module.
RTOL = 1e-5
ATOL = 1e-6

IMPORTABLE_HINT = "define it at the top level of an importable module, or save with format='export'"


def tensors(inputs: Arrays) -> dict[str, Any]:
    """Named arrays as tensors sharing their memory."""
    import torch

    # from_numpy shares memory but refuses negative strides.
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}


def _call(module: Callable[..., Any], named: dict[str, Any], single: bool) -> Any:
    if single:
        return module(next(iter(named.values())))
    return module(**named)


def run(module: Callable[..., Any], inputs: Arrays, *, single: bool) -> Arrays:
    """``module`` on named arrays under ``torch.inference_mode``, its outputs named.

    A single input is passed positionally, several as keyword arguments.
    """
    import torch

    with torch.inference_mode():
        return _outputs(_call(module, tensors(inputs), single))


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


def other_batch(inputs: Arrays) -> Arrays:
    """The sample twice over: a second batch size that shows a specialised batch dimension."""
    return {k: np.concatenate([v, v]) for k, v in inputs.items()}


def save_first(
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
        path = directory / FILES[fmt]
        try:
            extra = _SAVERS[fmt](obj, path, inputs, single, init_kwargs)
            verify(LOADERS[fmt](path, extra), inputs, expected, single)
        except Exception as exc:
            path.unlink(missing_ok=True)
            failures.append(f"{fmt}: {exc}")
            continue
        return fmt, extra
    raise AimassError(
        ErrorCode.UNSUPPORTED, "could not save this torch module; " + "; ".join(failures)
    )


def verify(module: Callable[..., Any], inputs: Arrays, expected: Arrays, single: bool) -> None:
    """UNSUPPORTED unless ``module`` reproduces ``expected`` on the sample and on it doubled."""
    doubled = {k: np.concatenate([v, v]) for k, v in expected.items()}
    for sample, want in ((inputs, expected), (other_batch(inputs), doubled)):
        got = run(module, sample, single=single)
        if got.keys() != want.keys() or not all(
            got[k].shape == want[k].shape and np.allclose(got[k], want[k], rtol=RTOL, atol=ATOL)
            for k in want
        ):
            raise AimassError(
                ErrorCode.UNSUPPORTED, "the reloaded artifact does not reproduce the module"
            )


# --- state_dict ---------------------------------------------------------------


def _save_state_dict(
    obj: Any, path: Path, inputs: Arrays, single: bool, init_kwargs: dict[str, Any]
) -> dict[str, Any]:
    from safetensors.torch import save_model

    cls_path = class_path(type(obj), hint=IMPORTABLE_HINT)
    # Round-trip through JSON now so a kwarg that cannot be recorded fails here.
    kwargs = json.loads(json.dumps(init_kwargs))
    save_model(obj, str(path))
    return {"class": cls_path, "init_kwargs": kwargs}


def _load_state_dict(path: Path, options: Mapping[str, Any]) -> Any:
    import torch
    from safetensors.torch import load_model

    module_cls = import_class(options["class"], torch.nn.Module, hint=IMPORTABLE_HINT)
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
    sample = inputs if len(next(iter(inputs.values()))) > 1 else other_batch(inputs)
    named = tensors(sample)
    batch = Dim("batch")
    if single:
        program = torch.export.export(
            obj, (next(iter(named.values())),), dynamic_shapes=({0: batch},), strict=False
        )
    else:
        program = torch.export.export(
            obj, (), kwargs=named, dynamic_shapes={k: {0: batch} for k in named}, strict=False
        )
    torch.export.save(program, path)
    return {}


def load_export(path: Path, options: Mapping[str, Any]) -> Any:
    """The module of a ``torch.export`` program file."""
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
            named = tensors(inputs)
            if single:
                scripted = torch.jit.trace(obj, (next(iter(named.values())),))  # type: ignore[no-untyped-call]
            else:
                scripted = torch.jit.trace(obj, example_kwarg_inputs=named)  # type: ignore[no-untyped-call]
            method = "trace"
        torch.jit.save(scripted, str(path))
    return {"torchscript": method}


def _load_torchscript(path: Path, options: Mapping[str, Any]) -> Any:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()  # type: ignore[no-untyped-call]


_SAVERS: dict[str, Callable[[Any, Path, Arrays, bool, dict[str, Any]], dict[str, Any]]] = {
    "state_dict": _save_state_dict,
    "export": _save_export,
    "torchscript": _save_torchscript,
}
LOADERS: dict[str, Callable[[Path, Mapping[str, Any]], Any]] = {
    "state_dict": _load_state_dict,
    "export": load_export,
    "torchscript": _load_torchscript,
}
"""Each format's loader: the artifact file and the manifest's options in, the module out."""
