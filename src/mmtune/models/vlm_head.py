"""Kind `vlm-head`: a VLM as an encoder, its pooled last hidden state into a new K-class head.

The prompt is the same chat-rendered template as vlm-generative's, ending in the generation prompt, so the
last token's state is the one the model would answer from. Pooling: that last token (prompts are left-padded,
so it is the last position of every row) or the mean over the real tokens, image tokens included. The
language-model head is never run. Adapters (LoRA/QLoRA) and the head are saved and reloaded together, as
every run saves all trainable parameters.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmtune.config import Config
from mmtune.models.vlm_common import VlmClassifierBase


class VlmHeadClassifier(VlmClassifierBase):
    def __init__(self, cfg: Config, labels: list[str], output_size: int) -> None:
        super().__init__(cfg, labels)
        self.output_size = output_size
        self.pooling = cfg.model.vlm.pooling
        hidden = self.vlm.config.get_text_config().hidden_size
        self.head = nn.Sequential(
            nn.LayerNorm(hidden), nn.Dropout(cfg.model.vlm.dropout), nn.Linear(hidden, cfg.model.vlm.hidden_size),
            nn.GELU(), nn.Dropout(cfg.model.vlm.dropout), nn.Linear(cfg.model.vlm.hidden_size, self.output_size),
        )
        output = self.vlm.get_output_embeddings()
        if output is not None and output.weight is not self.vlm.get_input_embeddings().weight:
            # Never run by this kind: left trainable it would be saved in every checkpoint, and DDP would wait
            # for its gradient. (A tied one is the input embedding, which does train.)
            output.requires_grad_(False)
        self._record_trainable()

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        # The decoder without the language-model head: `.model` in every *ForConditionalGeneration / *ForCausalLM.
        states = self.vlm.model(**batch, use_cache=False).last_hidden_state.float()
        if self.pooling == "last":
            pooled = states[:, -1]
        else:
            mask = batch["attention_mask"][..., None].to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled)

