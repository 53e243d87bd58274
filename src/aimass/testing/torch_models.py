"""Small real PyTorch models for demos, tests and benchmarks (needs the torch extra)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DigitsMLP", "train_digits_mlp"]


class DigitsMLP(nn.Module):
    """The benchmark's digits classifier: 64 → 512 → 512 → 10 logits."""

    def __init__(self, hidden: int = 512) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(64, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of 8x8 digit images flattened to 64 features in [0, 1]."""
        return self.layers(x)  # type: ignore[no-any-return]


def train_digits_mlp(epochs: int = 5, seed: int = 0) -> tuple[DigitsMLP, torch.Tensor]:
    """Train on scikit-learn's digits (scaled to [0, 1]); returns the model and the inputs."""
    from sklearn.datasets import load_digits

    torch.manual_seed(seed)
    x_np, y_np = load_digits(return_X_y=True)
    x = torch.tensor(x_np / 16.0, dtype=torch.float32)
    y = torch.tensor(y_np)
    model = DigitsMLP()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for start in range(0, len(x), 64):
            optimiser.zero_grad()
            loss = nn.functional.cross_entropy(model(x[start : start + 64]), y[start : start + 64])
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
    return model.eval(), x
