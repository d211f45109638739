"""`mmtune dpo CONFIG`: direct preference optimisation of a VLM with TRL's DPOTrainer.

Rows are (images, prompt, chosen, rejected) (chat.format `preference`). With `model.lora.enabled` the reference
model is the policy's own base with the adapters switched off (TRL does this when `ref_model` is None and the
model is a peft model), so no second copy of the weights is held. Without LoRA, TRL keeps a frozen copy of the
starting model as the reference. `dpo.beta` and `dpo.loss_type` go to TRL unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmtune.config import DPO_LOSS_TYPES, Config
from mmtune.errors import InputError
from mmtune.generative.sft import ChatSplits, datasets_for, read_chat_splits, within_limits
from mmtune.generative.trainer_setup import (
    make_trainer,
    train_with_trl,
    trainer_arguments,
)


def dpo_arguments(cfg: Config, run_dir: Path, has_eval: bool) -> Any:
    from trl import DPOConfig

    if cfg.dpo.beta <= 0:
        raise InputError(f"dpo.beta: must be positive, got {cfg.dpo.beta}")
    unknown = [name for name in cfg.dpo.loss_type if name not in DPO_LOSS_TYPES]
    if unknown or not cfg.dpo.loss_type:
        raise InputError(f"dpo.loss_type: unknown {unknown or 'empty list'} (known: {', '.join(DPO_LOSS_TYPES)})")
    try:
        return DPOConfig(**trainer_arguments(cfg, run_dir, has_eval), beta=cfg.dpo.beta,
                         loss_type=list(cfg.dpo.loss_type), label_smoothing=cfg.dpo.label_smoothing)
    except ValueError as error:  # an unknown loss variant, or settings TRL refuses together
        raise InputError(f"dpo: {error}") from None


def dpo_trainer(cfg: Config, model: Any, processor: Any, splits: ChatSplits, run_dir: Path,
                peft_config: Any = None) -> Any:
    """TRL's DPOTrainer; `ref_model=None`: with a peft model TRL scores the reference with adapters disabled."""
    from trl import DPOTrainer

    train_set, val_set = datasets_for(within_limits(splits, processor, cfg, preference=True), cfg)
    args = dpo_arguments(cfg, run_dir, has_eval=val_set is not None)
    return make_trainer("dpo", DPOTrainer, cfg, model=model, ref_model=None, args=args, train_dataset=train_set,
                        eval_dataset=val_set, processing_class=processor, peft_config=peft_config)


def run_dpo(cfg: Config, resume: bool = False) -> str:
    """Preference-tune `model.name` on `data.train`; returns why training stopped (finished, time_budget, signal)."""
    splits = read_chat_splits(cfg, preference=True)  # bad data is found before a run folder is made
    return train_with_trl(cfg, resume, splits, dpo_trainer)
