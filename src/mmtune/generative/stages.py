"""`mmtune build-vlm CONFIG`: a LLaVA-style VLM from parts, in the two stages of LLaVA.

- stage 0: assemble `build.vision` + projector + `build.llm` and save it (no training).
- stage 1 (feature alignment): only the projector trains, on image-caption pairs (or any chat data); the
  vision encoder and the LM stay frozen. Starts from `model.name` when it names a built VLM, else assembles.
- stage 2 (instruction tuning): from `model.name` (stage 1's run_dir/model), the projector trains fully and the
  LM through LoRA (`model.lora.enabled`; without it the LM trains fully); `build.train_vision_tower` adds the
  vision encoder. The projector trains at `build.projector_lr_ratio` x train.lr (default: LLaVA-1.5's ratios).

The learning rate follows `train.lr` at `train.reference_batch_size` rescaled to the effective batch by
`train.lr_scaling` (LLaVA: 1e-3 at 256 for stage 1, 2e-5 at 128 for stage 2); the rate used is written to
run_dir/config.yaml and learning_rate.json. Every stage saves run_dir/model, a plain transformers LLaVA folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from mmtune.config import Config
from mmtune.errors import InputError
from mmtune.generative.build_vlm import BuiltVlm, build_llava, save_vlm
from mmtune.generative.sft import ChatSplits, read_chat_splits, sft_trainer
from mmtune.generative.trainer_setup import (
    RunCallback,
    compute_dtype,
    export_model,
    load_vlm,
    lora_config,
    prepare_run,
    run_trainer,
)
from mmtune.training.budget import StopSignals

log = logging.getLogger(__name__)

PROJECTOR = "multi_modal_projector"
VISION_TOWER = "vision_tower"


def run_build(cfg: Config, resume: bool = False) -> str:
    """Run the stage `build.stage` names; returns why it stopped (finished, time_budget, signal)."""
    if cfg.build.stage == 0:
        built = build_llava(cfg.build, cfg.chat.image_token, compute_dtype(cfg), cfg.seed)
        out = save_vlm(built, Path(cfg.output_dir) / "model")
        log.info(f"assembled VLM written to {out}")
        return "finished"
    if cfg.build.stage == 1 and cfg.model.lora.enabled:
        raise InputError("model.lora.enabled: stage 1 trains only the projector; LoRA belongs to stage 2")
    splits = read_chat_splits(cfg)  # bad data is found before a run folder is made
    cfg, run_dir, _ = prepare_run(cfg, resume)
    built, trainer = _stage_trainer(cfg, splits, run_dir)
    callback = RunCallback(cfg, run_dir, StopSignals(), accelerator=trainer.accelerator)
    stopped = run_trainer(trainer, callback, resume)
    if stopped == "finished":
        export_model(trainer, built.processor, cfg, run_dir)
    return stopped


def _stage_trainer(cfg: Config, splits: ChatSplits, run_dir: Path) -> tuple[BuiltVlm, Any]:
    """The model of the stage with only what the stage trains left trainable, in TRL's SFTTrainer."""
    if cfg.build.stage == 1:
        built = _stage_one_model(cfg)
        train_only(built.model, [PROJECTOR])
        return built, sft_trainer(cfg, built.model, built.processor, splits, run_dir)
    built = _stage_two_model(cfg)
    trained = [PROJECTOR] + ([VISION_TOWER] if cfg.build.train_vision_tower else [])
    if cfg.model.lora.enabled:  # peft freezes everything else and trains `modules_to_save` fully
        trainer = sft_trainer(cfg, built.model, built.processor, splits, run_dir,
                              lora_config(cfg, built.model, modules_to_save=trained))
    else:
        train_only(built.model, [*trained, "language_model", "lm_head"])
        trainer = sft_trainer(cfg, built.model, built.processor, splits, run_dir)
    scale_learning_rate(trainer, PROJECTOR, projector_lr_ratio(cfg))
    return built, trainer


def projector_lr_ratio(cfg: Config) -> float:
    """`build.projector_lr_ratio`, or LLaVA-1.5's stage-2 choice. Its full fine-tune trains every part at 2e-5; its
    LoRA recipe raises the rate to 2e-4 for the low-rank adapters only and keeps the fully trained projector at
    2e-5 (`mm_projector_lr`). Either way the projector moves at 2e-5: a ratio of 1 without LoRA, 0.1 with it."""
    if cfg.build.projector_lr_ratio is not None:
        return cfg.build.projector_lr_ratio
    return 0.1 if cfg.model.lora.enabled else 1.0


def _stage_one_model(cfg: Config) -> BuiltVlm:
    if cfg.model.name:
        return _built_from(cfg)
    if cfg.model.quantize != "none":
        raise InputError("model.quantize: stage 1 trains the full-precision projector of a freshly assembled model; "
                         "set model.quantize: none")
    return build_llava(cfg.build, cfg.chat.image_token, compute_dtype(cfg), cfg.seed)


def _stage_two_model(cfg: Config) -> BuiltVlm:
    if not cfg.model.name:
        raise InputError("model.name: stage 2 starts from a built VLM, e.g. the stage 1 run's model/ folder")
    if cfg.model.quantize != "none" and not cfg.model.lora.enabled:
        raise InputError("model.quantize: 4-/8-bit weights cannot be trained directly; set model.lora.enabled")
    return _built_from(cfg)


def _built_from(cfg: Config) -> BuiltVlm:
    model, processor = load_vlm(cfg)
    if not hasattr(model, "model") or not hasattr(model.model, PROJECTOR):
        raise InputError(f"model.name: {cfg.model.name} is a {type(model).__name__}, not a LLaVA-style VLM with "
                         f"a {PROJECTOR}; build one with build.stage: 0 or 1")
    return BuiltVlm(model=model, processor=processor)


def scale_learning_rate(trainer: Any, part: str, ratio: float) -> None:
    """Train the parameters under modules named `part` at `ratio` x train.lr. The trainer's own optimizer (its
    class, weight-decay groups) is built now, and `part`'s parameters move to groups of their own; the trainer
    keeps an optimizer it already has, and its schedule scales every group's rate alike."""
    if ratio == 1:
        return
    chosen = {id(p) for name, p in trainer.model.named_parameters() if p.requires_grad and part in name.split(".")}
    optimizer = trainer.create_optimizer()
    for group in list(optimizer.param_groups):
        moved = [p for p in group["params"] if id(p) in chosen]
        if moved:
            group["params"] = [p for p in group["params"] if id(p) not in chosen]
            settings = {key: value for key, value in group.items() if key != "params"}
            optimizer.add_param_group({**settings, "params": moved, "lr": group["lr"] * ratio})
    log.info(f"{part}: learning rate {trainer.args.learning_rate * ratio:.3g} ({ratio:g} x train.lr)")


def train_only(model: nn.Module, parts: list[str]) -> None:
    """Freeze every parameter except those inside modules named in `parts` (matched as name components)."""
    trainable = 0
    for name, param in model.named_parameters():
        param.requires_grad = any(part in name.split(".") for part in parts)
        trainable += param.numel() if param.requires_grad else 0
    if trainable == 0:
        raise InputError(f"nothing to train: no parameters under {parts} in {type(model).__name__}")
    log.info(f"training {trainable:,} parameters ({', '.join(parts)})")

