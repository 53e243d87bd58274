"""Hugging Face models: sentence embeddings and text classification.

Two kinds of model share this runtime, told apart by the manifest's format:

``sentence-transformers``
    A ``SentenceTransformer`` (or a directory holding one), saved with its own
    ``save``. Input ``text`` (BYTES ``[-1]``), output ``embedding``
    (FP32 ``[-1, dim]``), task ``embedding``.
``transformers``
    A ``text-classification`` ``Pipeline`` (or a directory holding a
    ``*ForSequenceClassification`` model and its tokenizer), saved with
    ``save_pretrained``. Input ``text``; outputs ``label`` (BYTES),
    ``score`` (FP32) and ``probabilities`` (FP32 ``[-1, n_labels]``).

Weights are always safetensors and loading reads the saved directory only
(``local_files_only``, no remote code), so nothing is fetched from the hub and
nothing in the files runs on load. A batch is one forward pass.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import threading
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from typing_extensions import override

from aimass.contract.manifest import Manifest
from aimass.contract.runtime import Arrays, ForkPolicy, LoadOptions, Runtime, Saved, SaveOptions
from aimass.contract.signature import Signature, Task, as_array
from aimass.errors import AimassError, ErrorCode
from aimass.runtimes.loading import refuse_pickle, require
from aimass.runtimes.torch import torch_fork_guard

__all__ = [
    "EmbeddingRuntime",
    "TextClassificationRuntime",
    "TransformersOptions",
    "TransformersRuntime",
]

_ST_FORMAT = "sentence-transformers"
_HF_FORMAT = "transformers"
_DEFAULT_SAMPLE = ("aimass", "a sentence to embed")
# Weight files that unpickle on load: never copied into a version.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt", ".h5", ".msgpack")


class TransformersOptions(SaveOptions):
    """How a Hugging Face model is saved."""

    normalize: bool = False
    """Scale every embedding to unit length (models that end in a Normalize module always do)."""
    allow_pickle: bool = True
    """Whether pickled weights may be read to convert them (default: the registry's setting)."""


class TransformersRuntime(Runtime):
    """Saves and loads both kinds; ``load`` returns the subclass that serves the kind."""

    name = "transformers"
    extra = "transformers"
    Options = TransformersOptions

    @override
    @classmethod
    def handles(cls, obj: Any) -> bool:
        if isinstance(obj, Path):
            return _directory_kind(obj) is not None
        mro = type(obj).__mro__
        if any(
            c.__module__.startswith("sentence_transformers.")
            and c.__name__ == "SentenceTransformer"
            for c in mro
        ):
            return True
        is_pipeline = any(
            c.__module__.startswith("transformers.pipelines") and c.__name__ == "Pipeline"
            for c in mro
        )
        return is_pipeline and getattr(obj, "task", None) == "text-classification"

    @override
    @classmethod
    def write(
        cls, obj: Any, directory: Path, *, sample_input: Any, options: TransformersOptions
    ) -> Saved:
        transformers = require("transformers", cls.extra)
        texts = _texts(as_array(_DEFAULT_SAMPLE if sample_input is None else sample_input))
        if isinstance(obj, Path):
            kind = _directory_kind(obj)
            if kind is None:
                raise AimassError(
                    ErrorCode.UNSUPPORTED,
                    f"{obj} holds neither a sentence-transformers model nor a "
                    "sequence-classification model",
                )
            obj = _copy_or_convert(obj, directory, kind, options.allow_pickle)
        elif _is_sentence_transformer(obj):
            obj.save(str(directory))
        elif getattr(obj, "task", None) == "text-classification":
            if getattr(obj, "tokenizer", None) is None:
                raise AimassError(
                    ErrorCode.UNSUPPORTED, "this text-classification pipeline has no tokenizer"
                )
            obj.model.save_pretrained(str(directory))
            obj.tokenizer.save_pretrained(str(directory))
        else:
            raise AimassError(
                ErrorCode.UNSUPPORTED,
                "the transformers runtime saves a SentenceTransformer or a "
                "text-classification pipeline",
            )
        if not any(directory.rglob("*.safetensors")):
            raise AimassError(ErrorCode.UNSUPPORTED, "the model was not saved as safetensors")
        if _is_sentence_transformer(obj):
            sentence_transformers = require("sentence_transformers", cls.extra)
            normalize = options.normalize or _ends_normalized(obj)
            embedder = EmbeddingRuntime.create(obj, normalize)
            outputs = embedder.run(texts)
            return Saved(
                framework="sentence-transformers",
                framework_version=sentence_transformers.__version__,
                format=_ST_FORMAT,
                signature=Signature.from_samples({"text": as_array(texts)}, outputs),
                task=Task.EMBEDDING,
                options={"dim": int(outputs["embedding"].shape[1]), "normalize": normalize},
            )
        classifier = TextClassificationRuntime.create(obj.model, obj.tokenizer)
        outputs = classifier.run(texts)
        return Saved(
            framework="transformers",
            framework_version=transformers.__version__,
            format=_HF_FORMAT,
            signature=Signature.from_samples({"text": as_array(texts)}, outputs),
            task=Task.TEXT_CLASSIFICATION,
            options={"labels": classifier.names},
        )

    @override
    @classmethod
    def load(cls, directory: Path, manifest: Manifest, options: LoadOptions) -> TransformersRuntime:
        require("transformers", cls.extra)
        if manifest.format == _ST_FORMAT:
            with _no_progress_bars():
                model = _load_sentence_transformer(directory)
            return EmbeddingRuntime(manifest, model, bool(manifest.options.get("normalize")))
        if manifest.format == _HF_FORMAT:
            with _no_progress_bars():
                model, tokenizer = _load_classifier(directory)
            return TextClassificationRuntime(manifest, model, tokenizer)
        raise AimassError(ErrorCode.UNSUPPORTED, f"unknown transformers format {manifest.format!r}")

    @override
    @classmethod
    def fork_policy(cls, manifest: Manifest, loaded: Runtime | None = None) -> ForkPolicy:
        return ForkPolicy(prepare=torch_fork_guard, before_fork=_stop_tqdm_monitors)

    @override
    def to_inputs(self, value: Any) -> Arrays:
        if isinstance(value, str):
            value = [value]
        return super().to_inputs(value)

    @override
    def predict(self, inputs: Arrays) -> Arrays:
        return self.run(_texts(inputs["text"]))

    @abstractmethod
    def run(self, texts: list[str]) -> Arrays:
        """Predict on plain texts; each loaded kind (embedding, classifier) implements it."""


class EmbeddingRuntime(TransformersRuntime):
    """A loaded sentence-transformers model: text in, one embedding per text out."""

    def __init__(self, manifest: Manifest, model: Any, normalize: bool) -> None:
        super().__init__(manifest)
        self.model = model
        self.normalize = normalize

    @classmethod
    def create(cls, model: Any, normalize: bool) -> EmbeddingRuntime:
        """An embedder around an in-memory model, before there is a manifest (used by save)."""
        placeholder = _placeholder_manifest(_ST_FORMAT, Task.EMBEDDING)
        return cls(placeholder, model, normalize)

    @override
    def run(self, texts: list[str]) -> Arrays:
        """Embed ``texts`` in one forward pass."""
        embeddings = self.model.encode(
            texts,
            batch_size=max(len(texts), 1),
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=False,
        )
        return {"embedding": np.asarray(embeddings, dtype=np.float32).reshape(len(texts), -1)}


class TextClassificationRuntime(TransformersRuntime):
    """A loaded sequence classifier: text in, label, score and probabilities out."""

    def __init__(self, manifest: Manifest, model: Any, tokenizer: Any) -> None:
        super().__init__(manifest)
        self.model = model
        self.tokenizer = tokenizer
        config = model.config
        self.names = [str(config.id2label[i]) for i in range(config.num_labels)]
        # Mirror the text-classification pipeline: sigmoid for one logit or
        # multi-label problems, softmax otherwise.
        self._sigmoid = config.num_labels == 1 or (
            config.problem_type == "multi_label_classification"
        )
        limits = [tokenizer.model_max_length, getattr(config, "max_position_embeddings", None)]
        self._max_length = min(int(n) for n in limits if n)

    @classmethod
    def create(cls, model: Any, tokenizer: Any) -> TextClassificationRuntime:
        """A classifier around an in-memory model, before there is a manifest (used by save)."""
        placeholder = _placeholder_manifest(_HF_FORMAT, Task.TEXT_CLASSIFICATION)
        return cls(placeholder, model, tokenizer)

    @override
    def labels(self) -> list[Any] | None:
        return list(self.names)

    @override
    def run(self, texts: list[str]) -> Arrays:
        """Classify ``texts`` in one forward pass."""
        import torch

        encoded = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self._max_length,
            return_tensors="pt",
        )
        with torch.inference_mode():
            logits = self.model(**encoded).logits.float()
            probabilities = logits.sigmoid() if self._sigmoid else logits.softmax(dim=-1)
        probs = probabilities.numpy()
        best = probs.argmax(axis=1)
        return {
            "label": np.array([self.names[i] for i in best], dtype=object),
            "score": probs[np.arange(len(best)), best].astype(np.float32),
            "probabilities": probs.astype(np.float32),
        }


def _placeholder_manifest(fmt: str, task: Task) -> Manifest:
    # save runs the model through the same code that serves it, before the
    # real manifest exists; this one only carries what that code reads.
    return Manifest(
        runtime=TransformersRuntime.name,
        framework="transformers",
        framework_version="",
        format=fmt,
        task=task,
        signature=Signature(inputs=()),
    )


def _texts(values: np.ndarray[Any, Any]) -> list[str]:
    if values.ndim != 1 or values.dtype.kind not in ("U", "S", "O"):
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"text must be a one-dimensional list of strings, got shape {list(values.shape)} "
            f"of {values.dtype}",
            field="text",
        )
    texts = []
    for value in values:
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if not isinstance(value, str):
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"text must hold strings, got {type(value).__name__}",
                field="text",
            )
        texts.append(value)
    return texts


def _is_sentence_transformer(obj: Any) -> bool:
    return any(
        c.__module__.startswith("sentence_transformers.") and c.__name__ == "SentenceTransformer"
        for c in type(obj).__mro__
    )


def _ends_normalized(model: Any) -> bool:
    return any(type(module).__name__ == "Normalize" for module in model)


def _directory_kind(path: Path) -> str | None:
    """Which kind of model a directory holds, from its JSON files alone."""
    if not path.is_dir():
        return None
    if (path / "modules.json").is_file():
        return _ST_FORMAT
    config = path / "config.json"
    if config.is_file():
        try:
            architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures")
        except (ValueError, AttributeError):
            return None
        if any(str(a).endswith("ForSequenceClassification") for a in architectures or ()):
            return _HF_FORMAT
    return None


def _copy_or_convert(source: Path, directory: Path, kind: str, allow_pickle: bool) -> Any:
    """Copy a model directory's safe files, or re-save it as safetensors; return the model."""
    if not any(source.rglob("*.safetensors")):
        refuse_pickle(allow_pickle, f"the weight file of {source} (not safetensors)")
    else:
        shutil.copytree(
            source,
            directory,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(".*", *(f"*{s}" for s in _PICKLE_SUFFIXES)),
        )
        source = directory
    if kind == _ST_FORMAT:
        model = _load_sentence_transformer(source)
        if source != directory:
            model.save(str(directory))
        return model
    # Pickled weights are only read to convert them, with transformers' weights_only loader.
    model, tokenizer = _load_classifier(source, safetensors_only=source == directory)
    if source != directory:
        model.save_pretrained(str(directory))
        tokenizer.save_pretrained(str(directory))
    return _LoadedPipeline(model, tokenizer)


class _LoadedPipeline:
    """The parts of a text-classification pipeline that save reads."""

    task = "text-classification"

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer


def _stop_tqdm_monitors() -> None:
    """Stop tqdm's monitor threads (transformers' progress bars start them) before a fork.

    A forked worker must not inherit a lock such a thread holds; tqdm starts a
    new monitor when a later bar needs one.
    """
    if "tqdm" not in sys.modules:
        return
    from tqdm import TMonitor

    for thread in threading.enumerate():
        if isinstance(thread, TMonitor):
            thread.exit()


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Without the "Loading weights" bar transformers draws on every load: routine in a server."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def _load_sentence_transformer(directory: Path) -> Any:
    require("sentence_transformers", TransformersRuntime.extra)
    from sentence_transformers import SentenceTransformer

    _check_modules(directory)
    return SentenceTransformer(
        str(directory), device="cpu", local_files_only=True, trust_remote_code=False
    ).eval()


def _check_modules(directory: Path) -> None:
    # modules.json names classes that sentence-transformers imports by path:
    # only its own are allowed, so a crafted file cannot import anything else.
    modules: Sequence[dict[str, Any]] = json.loads(
        (directory / "modules.json").read_text(encoding="utf-8")
    )
    for module in modules:
        if not str(module.get("type", "")).startswith("sentence_transformers."):
            raise AimassError(
                ErrorCode.UNSUPPORTED,
                f"modules.json names {module.get('type')!r}; only sentence_transformers "
                "modules are loaded",
            )


def _load_classifier(directory: Path, *, safetensors_only: bool = True) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        str(directory), local_files_only=True, trust_remote_code=False
    )
    model = AutoModelForSequenceClassification.from_pretrained(
        str(directory),
        local_files_only=True,
        trust_remote_code=False,
        use_safetensors=True if safetensors_only else None,
    )
    return model.eval(), tokenizer
