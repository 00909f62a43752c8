"""AUHead: a small multilabel head mapping per-face feature vectors to AU occurrence logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["AUHead"]


class AUHead(nn.Module):
    """Standardise features, then a one-hidden-layer MLP (or a linear layer) to one logit per AU.

    ``logits = W2 · GELU(W1 · dropout((x − mean) / std)) + b`` (hidden > 0) or
    ``logits = W · ((x − mean) / std) + b`` (hidden = 0). The feature mean/std and the per-AU decision
    thresholds are buffers, saved with the weights.

    Args:
        in_features: D, length of the feature vector (see :mod:`mien.models.au.features`).
        au_names: the A AU names in output order, FACS style ``AU01`` … ``AU45``.
        hidden: width of the hidden layer; 0 for a linear head.
        dropout: dropout probability on the standardised input and the hidden layer (training only).

    Raises:
        ValueError: ``in_features`` < 1, no AU names, duplicate names, or ``hidden`` < 0.
    """

    def __init__(self, in_features: int, au_names: Sequence[str], hidden: int = 128, dropout: float = 0.2):
        super().__init__()
        au_names = [str(a) for a in au_names]
        if in_features < 1 or not au_names or len(set(au_names)) != len(au_names) or hidden < 0:
            raise ValueError(f"AUHead: bad arguments in_features={in_features}, au_names={au_names}, "
                             f"hidden={hidden}")
        self.in_features = int(in_features)
        self.au_names = au_names
        self.hidden = int(hidden)
        self.register_buffer("feature_mean", torch.zeros(in_features))
        self.register_buffer("feature_std", torch.ones(in_features))
        self.register_buffer("thresholds", torch.full((len(au_names),), 0.5))
        a = len(au_names)
        if hidden:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, hidden), nn.GELU(),
                                     nn.Dropout(dropout), nn.Linear(hidden, a))
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, a))

    @property
    def num_aus(self) -> int:
        return len(self.au_names)

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-6) -> None:
        """Set the feature standardisation (D,) mean and std (std is floored at ``eps``)."""
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(eps))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, D) float features -> (B, A) float32 logits (probability = sigmoid(logit)).

        Raises:
            ValueError: the last dimension is not D.
        """
        if features.ndim != 2 or features.shape[1] != self.in_features:
            raise ValueError(f"AUHead expects (B, {self.in_features}) features, got {tuple(features.shape)}")
        x = (features.to(self.feature_mean.dtype) - self.feature_mean) / self.feature_std
        return self.net(x)

    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        """(B, D) features -> (B, A) AU occurrence probabilities in [0, 1] (no gradient, eval mode)."""
        was = self.training
        self.eval()
        try:
            with torch.inference_mode():
                return torch.sigmoid(self.forward(features))
        finally:
            self.train(was)
