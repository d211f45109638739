"""Kind `vilt`: ViLT with a new K-class head; posts with several images are supported.

Several images: ViLT reads the text with each image in turn and the pooled outputs are averaged
over the post's real images (posts with fewer images are padded and masked out of the mean). Unlike
transformers' ViltForImagesAndTextClassification, every image keeps image token type 1: pretrained
checkpoints have only two modality types, and each pass sees a single image anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import ViltModel, ViltProcessor

from mmtune.config import Config, ImageConfig
from mmtune.data.post import Post
from mmtune.errors import InputError
from mmtune.models.backbone import load_pretrained, set_up_backbone
from mmtune.models.base import Example
from mmtune.models.examples import ExampleMaker
from mmtune.models.image_pipeline import ImagePipeline
from mmtune.models.sources import check_model_source, note_fixed_image_size
from mmtune.models.trainable import TracksTrainable, TrainableSet

log = logging.getLogger(__name__)


def _vilt_side(processor: Any) -> int:
    size = getattr(getattr(processor, "image_processor", None), "size", None) or {}
    return int(size.get("shortest_edge", 384)) if isinstance(size, dict) else 384


class ViltClassifier(TracksTrainable, nn.Module):
    def __init__(self, cfg: Config, labels: list[str], output_size: int) -> None:
        super().__init__()
        if not cfg.model.name:
            raise InputError("model.name: kind vilt needs a ViLT checkpoint (e.g. dandelin/vilt-b32-mlm)")
        self.cfg = cfg
        self.labels = list(labels)
        self.output_size = output_size
        check_model_source(cfg.model.name, "model.name", {"vilt"}, kind="vilt")
        try:
            self.processor = ViltProcessor.from_pretrained(cfg.model.name,
                                                           trust_remote_code=cfg.model.trust_remote_code)
            self.backbone = self._load_backbone()
        except (OSError, ValueError) as exc:  # a Hub id that is not there (offline) or not a ViLT checkpoint
            raise InputError(f"model.name: cannot load a ViLT model from '{cfg.model.name}' "
                             f"({str(exc).splitlines()[0]})") from None
        note_fixed_image_size("ViLT", _vilt_side(self.processor), cfg.data.image.size, ImageConfig().size)
        hidden = self.backbone.config.hidden_size
        self.head = nn.Sequential(
            nn.Linear(hidden, hidden * 2), nn.LayerNorm(hidden * 2), nn.GELU(), nn.Dropout(cfg.model.vilt.dropout),
            nn.Linear(hidden * 2, self.output_size),
        )
        self.max_length = min(cfg.model.vilt.max_length, self.backbone.config.max_position_embeddings)
        self.examples = ExampleMaker(labels, cfg.data.text)
        self.images = ImagePipeline(cfg.data.image)
        self.flip_images = False
        self._configure_backbone()
        self.trainable = TrainableSet(self, ("backbone.",))

    def _load_backbone(self) -> ViltModel:
        m = self.cfg.model
        return load_pretrained(ViltModel, m.name, m.quantize, trust_remote_code=m.trust_remote_code)

    def _configure_backbone(self) -> None:
        m = self.cfg.model
        self.backbone = set_up_backbone(self.backbone, "vilt backbone", freeze=m.freeze,
                                        lora=m.lora if m.lora.enabled else None, quantized=m.quantize != "none",
                                        checkpointing=m.gradient_checkpointing)

    # --------------------------------------------------------------------------- the interface

    def prepare(self, posts: Sequence[Post], *, train: bool) -> list[Example]:
        return [self.examples(post) for post in posts]

    def collate(self, examples: Sequence[Example], *, train: bool) -> dict[str, Any]:
        counts = [max(1, len(e.post.images)) for e in examples]
        n_images = max(counts)
        rng = self.images.batch_rng(train)
        images = []
        for example in examples:
            own = self.images.load_all(example.post.images, rng, self.flip_images)
            images += own + [own[0]] * (n_images - len(own))  # padding, masked out of the mean
        encoded = self.processor.image_processor(images=images, return_tensors="pt")
        text = self.processor.tokenizer([e.text for e in examples], padding="longest", truncation=True,
                                        max_length=self.max_length, return_tensors="pt")
        pixel_values = encoded["pixel_values"]
        pixel_mask = encoded["pixel_mask"]
        batch = {
            "input_ids": text["input_ids"], "attention_mask": text["attention_mask"],
            "pixel_values": pixel_values.view(len(examples), n_images, *pixel_values.shape[1:]),
            "pixel_mask": pixel_mask.view(len(examples), n_images, *pixel_mask.shape[1:]),
            "image_counts": torch.tensor(counts),
        }
        if "token_type_ids" in text:
            batch["token_type_ids"] = text["token_type_ids"]
        return batch

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        pixel_values, pixel_mask = batch["pixel_values"], batch["pixel_mask"]
        pooled = []
        for i in range(pixel_values.shape[1]):
            outputs = self.backbone(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                token_type_ids=batch.get("token_type_ids"), pixel_values=pixel_values[:, i],
                pixel_mask=pixel_mask[:, i], image_token_type_idx=1,
            )
            pooled.append(outputs.pooler_output)
        stacked = torch.stack(pooled, dim=1)  # [B, n_images, H]
        mask = (torch.arange(stacked.shape[1], device=stacked.device)[None, :] < batch["image_counts"][:, None])
        mean = (stacked * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return self.head(mean)

