"""pair: [t; i; P] (2d + P), the two projections side by side; the head learns whatever interaction it needs.

Why the default instead of `concat`'s matching features: on frozen, cached towers with the weight average
(train.ema_decay), the extra t*i and |t-i| blocks tied on two sarcasm-like sets (caption against picture, +-0.002)
and lost 0.004-0.035 macro-F1 on held-out posts of the three others (benchmarks/RESULTS.md, third round of head
defaults)."""

from __future__ import annotations

import torch
from torch import nn


class PairFusion(nn.Module):
    def __init__(self, dim: int, n_post: int) -> None:
        super().__init__()
        self.out_dim = 2 * dim + n_post

    def forward(self, t: torch.Tensor, i: torch.Tensor, post: torch.Tensor | None) -> torch.Tensor:
        return torch.cat([t, i] + ([post] if post is not None else []), dim=-1)


def build(dim: int, n_post: int, dropout: float) -> nn.Module:
    return PairFusion(dim, n_post)
