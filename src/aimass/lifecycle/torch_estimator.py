"""PyTorch modules as scikit-learn estimators, so they fit inside a training Pipeline.

:class:`TorchClassifier` and :class:`TorchRegressor` take the training loop's
parameters (epochs, learning rate, batch size, weight decay) and a module: a
multilayer perceptron by default (``hidden`` sizes), or the dotted path of an
``nn.Module`` class whose constructor takes ``in_features`` and
``out_features``. The fitted weights are kept as numpy arrays and the module
is rebuilt from them on first use, so the estimator pickles (and persists
with skops) without the torch objects themselves.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from aimass.errors import AimassError, ErrorCode

__all__ = ["MLP", "TorchClassifier", "TorchRegressor"]


def _mlp_class() -> type[Any]:
    from torch import nn

    class _MLP(nn.Module):
        def __init__(self, in_features: int, out_features: int, hidden: tuple[int, ...]) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            width = in_features
            for size in hidden:
                layers += [nn.Linear(width, size), nn.ReLU()]
                width = size
            layers.append(nn.Linear(width, out_features))
            self.layers = nn.Sequential(*layers)

        def forward(self, x: Any) -> Any:
            return self.layers(x)

    return _MLP


MLP = "mlp"
"""The default module: a multilayer perceptron with ReLU between ``hidden`` layers."""


class _TorchEstimator(BaseEstimator):  # type: ignore[misc]
    _loss = "mse"

    def __init__(
        self,
        *,
        module: str = MLP,
        hidden: tuple[int, ...] | list[int] = (64,),
        epochs: int = 50,
        lr: float = 0.01,
        batch_size: int = 32,
        weight_decay: float = 0.0,
        random_state: int | None = None,
    ) -> None:
        self.module = module
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.random_state = random_state

    def _new_module(self, in_features: int, out_features: int) -> Any:
        if self.module == MLP:
            return _mlp_class()(in_features, out_features, tuple(self.hidden))
        module_name, _, attr = self.module.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError):
            raise AimassError(
                ErrorCode.INVALID_INPUT, f"torch module class '{self.module}' cannot be imported"
            ) from None
        return cls(in_features=in_features, out_features=out_features)

    def _fit(self, x: Any, targets: Any, out_features: int) -> None:
        import torch

        generator = torch.Generator().manual_seed(self.random_state or 0)
        torch.manual_seed(self.random_state or 0)
        inputs = torch.as_tensor(np.asarray(x, dtype=np.float32))
        net = self._new_module(inputs.shape[1], out_features)
        optimiser = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loss_fn = torch.nn.CrossEntropyLoss() if self._loss == "ce" else torch.nn.MSELoss()
        net.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(inputs), generator=generator)
            for start in range(0, len(inputs), self.batch_size):
                batch = order[start : start + self.batch_size]
                optimiser.zero_grad()
                out = net(inputs[batch])
                loss = loss_fn(out if self._loss == "ce" else out.squeeze(-1), targets[batch])
                loss.backward()
                optimiser.step()
        net.eval()
        self.n_features_in_ = int(inputs.shape[1])
        self.n_outputs_ = out_features
        self.weights_ = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
        self._net = net

    def _forward(self, x: Any) -> Any:
        import torch

        net = getattr(self, "_net", None)
        if net is None:
            net = self._new_module(self.n_features_in_, self.n_outputs_)
            net.load_state_dict({k: torch.as_tensor(v) for k, v in self.weights_.items()})
            net.eval()
            self._net = net
        with torch.no_grad():
            return net(torch.as_tensor(np.asarray(x, dtype=np.float32))).numpy()

    def __getstate__(self) -> dict[str, Any]:
        # The rebuilt module is a cache: the numpy weights are the state.
        state = dict(self.__dict__)
        state.pop("_net", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class TorchClassifier(ClassifierMixin, _TorchEstimator):  # type: ignore[misc]
    """A PyTorch module trained with cross-entropy; predicts labels and probabilities."""

    _loss = "ce"

    def fit(self, x: Any, y: Any) -> TorchClassifier:
        """Train on features ``x`` and labels ``y``."""
        import torch

        self.classes_, encoded = np.unique(np.asarray(y), return_inverse=True)
        self._fit(x, torch.as_tensor(encoded, dtype=torch.long), len(self.classes_))
        return self

    def predict_proba(self, x: Any) -> Any:
        """Softmax of the module's logits, one column per class in ``classes_``."""
        logits = self._forward(x)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def predict(self, x: Any) -> Any:
        """The most probable class of each row."""
        return self.classes_[np.argmax(self._forward(x), axis=1)]


class TorchRegressor(RegressorMixin, _TorchEstimator):  # type: ignore[misc]
    """A PyTorch module trained with mean squared error; predicts one number per row."""

    def fit(self, x: Any, y: Any) -> TorchRegressor:
        """Train on features ``x`` and targets ``y``."""
        import torch

        self._fit(x, torch.as_tensor(np.asarray(y, dtype=np.float32)), 1)
        return self

    def predict(self, x: Any) -> Any:
        """The module's output for each row."""
        return self._forward(x)[:, 0]
