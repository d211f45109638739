"""Every fusion in the registry: its output size is what it declares, with and without post features, and it
passes gradients to both modalities. A new fusion module is picked up here by itself."""

from __future__ import annotations

import pytest
import torch

from mmtune.errors import InputError
from mmtune.models.fusions import known_fusions, make_fusion


def test_the_shipped_fusions_are_found() -> None:
    assert {"concat", "pair", "gated", "cross_attention", "interaction"} <= set(known_fusions())


@pytest.mark.parametrize("name", known_fusions())
@pytest.mark.parametrize("n_post", [0, 5])
def test_every_fusion_gives_its_declared_size_and_gradients(name: str, n_post: int) -> None:
    torch.manual_seed(0)
    fusion = make_fusion(name, 8, n_post, 0.0)
    t, i = torch.randn(3, 8, requires_grad=True), torch.randn(3, 8, requires_grad=True)
    post = torch.randn(3, n_post) if n_post else None
    out = fusion(t, i, post)
    assert out.shape == (3, fusion.out_dim)
    out.sum().backward()
    assert t.grad is not None and i.grad is not None and t.grad.abs().sum() > 0 and i.grad.abs().sum() > 0


def test_an_unknown_fusion_names_the_key() -> None:
    with pytest.raises(InputError, match=r"model\.fusion\.method: unknown fusion 'no_such' \(known: .*cross_attention"):
        make_fusion("no_such", 8, 0, 0.0)


def test_pair_puts_the_two_vectors_and_the_post_features_side_by_side() -> None:
    t, i, post = torch.randn(2, 4), torch.randn(2, 4), torch.randn(2, 3)
    assert torch.equal(make_fusion("pair", 4, 3, 0.0)(t, i, post), torch.cat([t, i, post], dim=-1))
