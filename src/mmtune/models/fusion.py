"""Kind `fusion`: a text tower and an image tower (see towers.py), each projected, fused, then an MLP head.

    text  -> tower -> Linear + LayerNorm + Dropout -> t [d]  \
                                                               fusion (+ post features) -> MLP head -> [B, K]
    image -> tower -> Linear + LayerNorm + Dropout -> i [d]  /

The LayerNorm puts both modalities on one scale (CLIP text and image norms differ; EfficientNet
features are large and non-negative, e5's are unit-norm), which products and differences need.

Feature normalisation (`model.fusion.feature_norm`): the first Linear of each projection subtracts the
training posts' mean feature and divides by a scale fitted on the same posts' cached features (in
`prepare(train=True)`): one number per tower (`tower`: the root mean variance) or one per feature
(`feature`, as scikit-learn's StandardScaler). The statistics are persistent buffers of that Linear, so they
are saved with the trainable weights (best/, last/) and used unchanged at predict. Why: a raw EfficientNet
feature is ~100x an e5 feature, which AdamW's per-parameter steps and the weight decay do not undo; per
feature, near-constant CNN features get blown up to unit scale (benchmarks/RESULTS.md, issue 13). A tower
whose features are not cached (it trains, or images are augmented) keeps mean 0, scale 1.
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
from mmtune.models.base import Example
from mmtune.models.examples import ExampleMaker
from mmtune.models.extraction import image_features, resolve_workers, text_features
from mmtune.models.feature_cache import FeatureCache, FeatureStore
from mmtune.models.fusions import make_fusion
from mmtune.models.onnx_runtime import check_runtime, choose_runtime
from mmtune.models.post_features import NUM_POST_FEATURES, post_feature_vector
from mmtune.models.towers import build_image_tower, build_text_tower, check_globs, tower_sources
from mmtune.models.trainable import TracksTrainable, TrainableSet

log = logging.getLogger(__name__)

TOWERS = ("text", "image")
_CACHE_BATCH = 32


class StandardizedLinear(nn.Linear):
    """A Linear on standardised inputs: (x - input_mean) / input_std, statistics fitted by `fit`.

    Buffers live on the module that owns the weights: checkpoints keep the persistent buffers of trainable
    modules (training/checkpoint.py), and an old checkpoint without them leaves the identity (0, 1)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)
        self.register_buffer("input_mean", torch.zeros(in_features))
        self.register_buffer("input_std", torch.ones(in_features))

    def fit(self, features: torch.Tensor, per_feature: bool) -> None:
        """Mean and scale of `features` [posts, in_features]: a std per feature, or one for all (the root of
        the mean variance) when not `per_feature`."""
        features = features.to(torch.float64)
        std = features.std(dim=0, unbiased=False) if len(features) > 1 else torch.ones(features.shape[-1])
        if not per_feature:
            std = std.pow(2).mean().sqrt().expand_as(std)
        with torch.no_grad():
            self.input_mean.copy_(features.mean(dim=0))
            # A constant feature (or one post) keeps its scale: dividing by ~0 would blow it up.
            self.input_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward((x - self.input_mean.to(x.dtype)) / self.input_std.to(x.dtype))


def projection(in_dim: int, out_dim: int, dropout: float) -> nn.Module:
    return nn.Sequential(StandardizedLinear(in_dim, out_dim), nn.LayerNorm(out_dim), nn.Dropout(dropout))


# ---------------------------------------------------------------------------------------------- classifier


class FusionClassifier(TracksTrainable, nn.Module):
    def __init__(self, cfg: Config, labels: list[str], output_size: int) -> None:
        super().__init__()
        m = cfg.model.fusion
        self.cfg = cfg
        self.labels = list(labels)
        self.output_size = output_size
        text_source, image_source = tower_sources(cfg)
        check_runtime(cfg.train.extract_runtime)
        self.text_tower = build_text_tower(cfg, text_source)
        self.image_tower = build_image_tower(cfg, image_source)
        check_globs(cfg, [self.text_tower, self.image_tower])
        self.text_proj = projection(self.text_tower.dim, m.projection_dim, m.dropout)
        self.image_proj = projection(self.image_tower.dim, m.projection_dim, m.dropout)
        self.fusion = make_fusion(m.method, m.projection_dim, NUM_POST_FEATURES if m.post_features else 0, m.dropout)
        self.head = nn.Sequential(nn.Linear(self.fusion.out_dim, m.hidden_size), nn.GELU(), nn.Dropout(m.dropout),
                                  nn.Linear(m.hidden_size, self.output_size))
        self.examples = ExampleMaker(labels, cfg.data.text)
        self.flip_images = False  # test-time flip, set by predict
        self.cached = {name: self._uses_cache(name) for name in TOWERS}
        self._cache: FeatureCache | None = None
        self.trainable = TrainableSet(self, ("text_tower.", "image_tower."))
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
                norm = self.cfg.model.fusion.feature_norm
                if train and norm != "none":
                    self._proj(name)[0].fit(torch.stack(vectors), per_feature=norm == "feature")
        return examples

    def _proj(self, name: str) -> nn.Sequential:
        return self.text_proj if name == "text" else self.image_proj

    def _example(self, post: Post) -> Example:
        example = self.examples(post)
        if self.cfg.model.fusion.post_features:
            example.features["post"] = post_feature_vector(post.text)
        return example

    def _cached_features(self, name: str, examples: list[Example]) -> list[torch.Tensor]:
        tower = self._tower(name)
        store = self._store(tower)
        if name == "text":
            return text_features(tower, store, [e.text for e in examples], batch_size=_CACHE_BATCH)
        workers = resolve_workers(self.cfg.train.extract_workers)
        runtime = choose_runtime(self.cfg.train.extract_runtime, tower)
        return image_features(tower, store, [e.post for e in examples], workers=workers, batch_size=_CACHE_BATCH,
                              runtime=runtime)

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

    def set_backbone_trainable(self, trainable: bool) -> None:
        self._backbone_on = trainable
        self.trainable.set_backbone(self, trainable)
        self.train(self.training)


def _prefixed(name: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{name}_{key}": value for key, value in inputs.items()}

