"""`mmtune sft CONFIG`: supervised fine-tuning of a VLM on chat data with TRL's SFTTrainer.

Only answer tokens are in the loss: rows are prompt/completion pairs (see chat_data), for which TRL's vision
collator sets the labels of every prompt and image token to -100. LoRA / QLoRA (`model.lora`, `model.quantize`)
adapt the language model; the run folder gets config.yaml (with the resolved learning rate), metrics.jsonl,
TRL checkpoints (checkpoint-N, resumable with --resume) and, when training finishes, model/ (adapters merged,
loadable with from_pretrained) and adapter/.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmtune.config import Config
from mmtune.errors import InputError
from mmtune.generative.chat_data import ChatRows, ReadRequest, read_rows
from mmtune.generative.row_length import within_max_length
from mmtune.generative.trainer_setup import (
    make_trainer,
    train_with_trl,
    trainer_arguments,
    with_images,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatSplits:
    train: ChatRows
    val: ChatRows | None


def read_chat_splits(cfg: Config, preference: bool = False) -> ChatSplits:
    """data.train (and data.val) in the layout `chat.format` names, bad rows as `data.on_bad_row` says."""
    if not cfg.data.train:
        raise InputError("data.train: the chat data file to train on")

    def read(path: str, images: str | None) -> ChatRows:
        return read_rows(ReadRequest(Path(path), Path(images) if images else None, cfg.chat, cfg.data.columns,
                                     cfg.data.on_bad_row, preference=preference,
                                     max_pixels=cfg.data.image.max_pixels, max_bytes=cfg.data.image.max_bytes))

    train = read(cfg.data.train, cfg.data.train_images)
    val = read(cfg.data.val, cfg.data.val_images or cfg.data.train_images) if cfg.data.val else None
    log.info(f"{len(train.rows)} training rows ({train.layout}), {len(val.rows) if val else 0} validation rows")
    return ChatSplits(train, val)


def within_limits(splits: ChatSplits, processor: Any, cfg: Config, preference: bool = False) -> ChatSplits:
    """The splits without their rows over chat.max_length tokens (counted as too_long), so none is ever cut."""
    val = within_max_length(splits.val, processor, cfg, preference) if splits.val is not None else None
    return ChatSplits(within_max_length(splits.train, processor, cfg, preference), val)


def datasets_for(splits: ChatSplits, cfg: Config) -> tuple[Any, Any]:
    from datasets import Dataset

    def build(rows: ChatRows | None) -> Any:
        return None if rows is None else with_images(Dataset.from_list(rows.rows), cfg.data.image.max_pixels,
                                                     cfg.model.vlm.image_size, cfg.data.image.max_bytes)

    return build(splits.train), build(splits.val)


def sft_trainer(cfg: Config, model: Any, processor: Any, splits: ChatSplits, run_dir: Path,
                peft_config: Any = None) -> Any:
    """TRL's SFTTrainer over prompt/completion rows: the loss covers answer tokens only."""
    from trl import SFTConfig, SFTTrainer

    train_set, val_set = datasets_for(within_limits(splits, processor, cfg), cfg)
    args = SFTConfig(**trainer_arguments(cfg, run_dir, has_eval=val_set is not None), completion_only_loss=True)
    return make_trainer("sft", SFTTrainer, cfg, model=model, args=args, train_dataset=train_set,
                        eval_dataset=val_set, processing_class=processor, peft_config=peft_config)


def run_sft(cfg: Config, resume: bool = False) -> str:
    """Fine-tune `model.name` on `data.train`; returns why training stopped (finished, time_budget, signal)."""
    splits = read_chat_splits(cfg)  # bad data is found before a run folder is made
    return train_with_trl(cfg, resume, splits, sft_trainer)
