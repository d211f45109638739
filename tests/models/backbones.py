"""Tiny random backbones of the real architectures, built from their config classes."""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    BertConfig,
    BertModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    ConvNextConfig,
    ConvNextModel,
    SiglipVisionConfig,
    SiglipVisionModel,
    ViltConfig,
    ViltModel,
    ViTConfig,
    ViTModel,
    XLMRobertaConfig,
    XLMRobertaModel,
)

SIZE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def tiny_bert(layers: int = 2, seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    return BertModel(BertConfig(vocab_size=100, **{**SIZE, "num_hidden_layers": layers}, **NO_DROPOUT))


def tiny_xlm_roberta() -> XLMRobertaModel:
    return XLMRobertaModel(XLMRobertaConfig(vocab_size=100, **SIZE))


def tiny_clip_vision(seed: int = 0) -> CLIPVisionModel:
    torch.manual_seed(seed)
    return CLIPVisionModel(CLIPVisionConfig(image_size=32, patch_size=8, **SIZE))


def tiny_siglip_vision() -> SiglipVisionModel:
    return SiglipVisionModel(SiglipVisionConfig(image_size=32, patch_size=8, **SIZE))


def tiny_vit() -> ViTModel:
    return ViTModel(ViTConfig(image_size=32, patch_size=8, **SIZE))


def tiny_vilt() -> ViltModel:
    return ViltModel(ViltConfig(vocab_size=100, image_size=32, patch_size=8, max_position_embeddings=40, **SIZE))


def tiny_convnext(depths: tuple[int, int] = (1, 3)) -> ConvNextModel:
    return ConvNextModel(ConvNextConfig(hidden_sizes=[8, 16], depths=list(depths), num_stages=2))


def bert_batch(seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(1, 100, (4, 6), generator=generator),
            "attention_mask": torch.ones(4, 6, dtype=torch.long)}


def train_steps(backbone: nn.Module, head: nn.Module, steps: int = 3) -> None:
    """A few AdamW steps of a BERT-like backbone + linear head on random tokens.

    No weight decay: LoRA's B starts at zero, so A would only move through decay on the first step.
    The pooler joins the features so that presets which train it get gradients there too.
    """
    params = [p for p in [*backbone.parameters(), *head.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    targets = torch.tensor([0, 1, 0, 1])
    for step in range(steps):
        output = backbone(**bert_batch(step))
        features = output.last_hidden_state.mean(dim=1)
        if getattr(output, "pooler_output", None) is not None:
            features = features + output.pooler_output
        loss = nn.functional.cross_entropy(head(features), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
