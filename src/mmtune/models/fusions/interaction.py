"""interaction: Hate-CLIPper's feature interaction matrix, the outer product t i^T flattened (d^2 + P).

Keep projection_dim small (32-64): the head's first layer has d^2 x hidden weights.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


class InteractionFusion(nn.Module):
    def __init__(self, dim: int, n_post: int) -> None:
        super().__init__()
        self.out_dim = dim * dim + n_post

    def forward(self, t: torch.Tensor, i: torch.Tensor, post: torch.Tensor | None) -> torch.Tensor:
        matrix = (t.unsqueeze(2) * i.unsqueeze(1)).flatten(1)
        return torch.cat([matrix, post], dim=-1) if post is not None else matrix


def build(dim: int, n_post: int, dropout: float) -> nn.Module:
    if dim > 64:
        log.info(f"interaction fusion with projection_dim {dim}: the head reads {dim * dim} features "
                 "(projection_dim 32-64 is the usual size)")
    return InteractionFusion(dim, n_post)
