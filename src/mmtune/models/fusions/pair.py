"""pair: [t; i; P] (2d + P), the two projections side by side; the head learns whatever interaction it needs.

Why beside `concat`'s matching features: on frozen, cached towers the extra t*i and |t-i| blocks double the head's
input and lost 0.01-0.03 macro-F1 on held-out posts of most data sets measured, sarcasm-like (caption against
picture) ones included (benchmarks/RESULTS.md, third round of head defaults)."""

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
