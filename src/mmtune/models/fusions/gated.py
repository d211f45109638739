"""gated: the gated multimodal unit (Arevalo et al. 2017): z = sigmoid(W[t; i]),
h = z * tanh(W_t t) + (1 - z) * tanh(W_i i); [h; P] (d + P)."""

from __future__ import annotations

import torch
from torch import nn


class GatedFusion(nn.Module):
    def __init__(self, dim: int, n_post: int) -> None:
        super().__init__()
        self.text_hidden = nn.Linear(dim, dim)
        self.image_hidden = nn.Linear(dim, dim)
        self.gate = nn.Linear(2 * dim, dim)
        self.out_dim = dim + n_post

    def forward(self, t: torch.Tensor, i: torch.Tensor, post: torch.Tensor | None) -> torch.Tensor:
        z = torch.sigmoid(self.gate(torch.cat([t, i], dim=-1)))
        fused = z * torch.tanh(self.text_hidden(t)) + (1 - z) * torch.tanh(self.image_hidden(i))
        return torch.cat([fused, post], dim=-1) if post is not None else fused


def build(dim: int, n_post: int, dropout: float) -> nn.Module:
    return GatedFusion(dim, n_post)
