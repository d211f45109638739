"""concat: [t; i; t*i; |t-i|; P] (4d + P), the classic matching features, so the head sees the agreement and the
contrast between caption and image, which sarcasm lives on."""

from __future__ import annotations

import torch
from torch import nn


class ConcatFusion(nn.Module):
    def __init__(self, dim: int, n_post: int) -> None:
        super().__init__()
        self.out_dim = 4 * dim + n_post

    def forward(self, t: torch.Tensor, i: torch.Tensor, post: torch.Tensor | None) -> torch.Tensor:
        parts = [t, i, t * i, (t - i).abs()]
        return torch.cat(parts + ([post] if post is not None else []), dim=-1)


def build(dim: int, n_post: int, dropout: float) -> nn.Module:
    return ConcatFusion(dim, n_post)
