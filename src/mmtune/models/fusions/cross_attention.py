"""cross_attention: one pre-norm transformer layer over the pooled modality tokens [t, i, (P projected to a token)]
with learned type embeddings, outputs flattened (2d or 3d).

The towers give pooled vectors (which is what the feature cache stores), so attention runs over modality tokens,
not over patches: each modality attends to the other and to P.
"""

from __future__ import annotations

import torch
from torch import nn


class AttentionFusion(nn.Module):
    def __init__(self, dim: int, n_post: int, dropout: float) -> None:
        super().__init__()
        n_tokens = 3 if n_post else 2
        self.post_token = nn.Sequential(nn.Linear(n_post, dim), nn.LayerNorm(dim)) if n_post else None
        self.type_embedding = nn.Parameter(torch.randn(n_tokens, dim) * 0.02)
        heads = next(h for h in (8, 4, 2, 1) if dim % h == 0)
        self.layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=dropout,
                                                activation="gelu", batch_first=True, norm_first=True)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = n_tokens * dim

    def forward(self, t: torch.Tensor, i: torch.Tensor, post: torch.Tensor | None) -> torch.Tensor:
        tokens = [t, i]
        if self.post_token is not None:
            tokens.append(self.post_token(post))
        x = torch.stack(tokens, dim=1) + self.type_embedding
        return self.norm(self.layer(x)).flatten(1)


def build(dim: int, n_post: int, dropout: float) -> nn.Module:
    return AttentionFusion(dim, n_post, dropout)
