"""`mmtune dpo CONFIG`: direct preference optimisation of a VLM with TRL's DPOTrainer.

Rows are (images, prompt, chosen, rejected) (chat.format `preference`). With `model.lora.enabled` the reference
model is the policy's own base with the adapters switched off (TRL does this when `ref_model` is None and the
model is a peft model), so no second copy of the weights is held. Without LoRA, TRL keeps a frozen copy of the
starting model as the reference. `dpo.beta` and `dpo.loss_type` go to TRL unchanged.
"""

from __future__ import annotations

import time
from typing import Any

from mmtune.config import Config
from mmtune.errors import InputError
from mmtune.generative.sft import datasets_for, read_chat_splits
from mmtune.generative.trainer_setup import (
    RunCallback,
    export_model,
    load_vlm,
    lora_config,
    prepare_run,
    run_trainer,
    trainer_arguments,
)
from mmtune.training.budget import StopSignals


def dpo_arguments(cfg: Config, run_dir: Any, has_eval: bool) -> Any:
    from trl import DPOConfig

    if cfg.dpo.beta <= 0:
        raise InputError(f"dpo.beta: must be positive, got {cfg.dpo.beta}")
    try:
        return DPOConfig(**trainer_arguments(cfg, run_dir, has_eval), beta=cfg.dpo.beta,
                         loss_type=list(cfg.dpo.loss_type), label_smoothing=cfg.dpo.label_smoothing)
    except ValueError as error:  # an unknown loss variant, or settings TRL refuses together
        raise InputError(f"dpo: {error}") from None


def run_dpo(cfg: Config, resume: bool = False) -> str:
    """Preference-tune `model.name` on `data.train`; returns why training stopped (finished, time_budget, signal)."""
    from trl import DPOTrainer

    started = time.monotonic()
    cfg, run_dir, _ = prepare_run(cfg, resume)
    splits = read_chat_splits(cfg, preference=True)
    model, processor = load_vlm(cfg)
    peft_config = lora_config(cfg) if cfg.model.lora.enabled else None
    if cfg.model.quantize != "none" and peft_config is None:
        raise InputError("model.quantize: 4-/8-bit weights cannot be trained directly; set model.lora.enabled")
    train_set, val_set = datasets_for(splits, cfg)
    args = dpo_arguments(cfg, run_dir, has_eval=val_set is not None)
    try:
        trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=train_set, eval_dataset=val_set,
                             processing_class=processor, peft_config=peft_config)
    except ValueError as error:
        raise InputError(f"dpo: {error}") from None
    stopped = run_trainer(trainer, RunCallback(cfg, run_dir, StopSignals(), started), resume)
    if stopped == "finished":
        export_model(trainer, processor, cfg, run_dir)
    return stopped
