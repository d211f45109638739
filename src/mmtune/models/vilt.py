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

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import ViltModel, ViltProcessor

from mmtune.config import Config, ImageConfig
from mmtune.data.images import Augmenter, load_image
from mmtune.data.post import Post
from mmtune.data.text import TextNormalizer, pack_text
from mmtune.errors import InputError
from mmtune.models.adapters import apply_lora, enable_gradient_checkpointing, load_quantized, quantized_compute_dtype
from mmtune.models.base import Example, ParamGroup
from mmtune.models.freezing import apply_freeze
from mmtune.models.sources import check_model_source, note_fixed_image_size

log = logging.getLogger(__name__)


def _vilt_side(processor: Any) -> int:
    size = getattr(getattr(processor, "image_processor", None), "size", None) or {}
    return int(size.get("shortest_edge", 384)) if isinstance(size, dict) else 384


class ViltClassifier(nn.Module):
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
        self.normalizer = TextNormalizer(cfg.data.text)
        self.augmenter = Augmenter.for_images(cfg.data.image, seed=cfg.seed) if cfg.data.image.augment.enabled else None
        self.flip_images = False
        self._configure_backbone()
        self._trainable = {name for name, p in self.named_parameters() if p.requires_grad}

    def _load_backbone(self) -> ViltModel:
        model_cfg = self.cfg.model
        if model_cfg.quantize == "none":
            return ViltModel.from_pretrained(model_cfg.name, trust_remote_code=model_cfg.trust_remote_code)
        bits = 4 if model_cfg.quantize == "4bit" else 8
        return load_quantized(ViltModel, model_cfg.name, bits, quantized_compute_dtype(),
                              trust_remote_code=model_cfg.trust_remote_code)

    def _configure_backbone(self) -> None:
        model_cfg = self.cfg.model
        if model_cfg.quantize != "none" and not model_cfg.lora.enabled:
            apply_freeze(self.backbone, "all")  # quantized weights train only through adapters (QLoRA)
            log.info("vilt backbone: quantized and frozen; enable model.lora to fine-tune it (QLoRA)")
        elif model_cfg.lora.enabled:
            apply_freeze(self.backbone, "all")
            self.backbone = apply_lora(self.backbone, r=model_cfg.lora.r, alpha=model_cfg.lora.alpha,
                                       dropout=model_cfg.lora.dropout, targets=model_cfg.lora.targets,
                                       dora=model_cfg.lora.dora)
        else:
            report = apply_freeze(self.backbone, model_cfg.freeze.preset, model_cfg.freeze.last_n,
                                  model_cfg.freeze.freeze_globs, model_cfg.freeze.train_globs)
            log.info(f"vilt backbone: {report.summary()}")
        if model_cfg.gradient_checkpointing:
            enable_gradient_checkpointing(self.backbone)

    # --------------------------------------------------------------------------- the interface

    def prepare(self, posts: Sequence[Post], *, train: bool) -> list[Example]:
        examples = []
        for post in posts:
            extra = {name: self.normalizer(value) for name, value in post.extra.items()}
            text = pack_text(self.normalizer(post.text), extra, self.cfg.data.text)
            target = self.labels.index(post.label) if post.label in self.labels else -1
            examples.append(Example(id=post.id, target=target, text=text, post=post))
        return examples

    def collate(self, examples: Sequence[Example], *, train: bool) -> dict[str, Any]:
        counts = [max(1, len(e.post.images)) for e in examples]
        n_images = max(counts)
        # Augmentation draws from the torch RNG, whose state last/ saves: a resumed run augments alike.
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)))) if train and self.augmenter else None
        images = []
        for example in examples:
            own = [self._image(path, rng) for path in example.post.images]
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

    def _image(self, path: Any, rng: np.random.Generator | None) -> Image.Image:
        image = load_image(path, self.cfg.data.image.max_pixels, max_bytes=self.cfg.data.image.max_bytes)
        if rng is not None and self.augmenter is not None:
            image = self.augmenter(image, rng)
        if self.flip_images:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image

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

    def parameter_groups(self) -> list[ParamGroup]:
        head = [p for p in self.head.parameters()]
        backbone = [p for name, p in self.backbone.named_parameters() if f"backbone.{name}" in self._trainable]
        return [ParamGroup("head", head), ParamGroup("backbone", backbone)]

    def set_backbone_trainable(self, trainable: bool) -> None:
        for name, param in self.backbone.named_parameters():
            param.requires_grad = trainable and f"backbone.{name}" in self._trainable

    def trainable_parameter_names(self) -> list[str]:
        return sorted(self._trainable)

