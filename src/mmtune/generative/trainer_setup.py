"""What `sft`, `dpo` and `build-vlm` share around TRL's trainers: mmtune's config -> TRL arguments, the
learning-rate rule, model loading (QLoRA, gradient checkpointing), LoRA on the language model, the time
budget, the run folder (config.yaml, metrics.jsonl, model/) and resume from TRL checkpoints.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForImageTextToText, PrinterCallback, ProgressCallback, TrainerCallback
from transformers.integrations import TensorBoardCallback
from transformers.trainer_utils import get_last_checkpoint

from mmtune.config import Config, save_config
from mmtune.data.images import ImageError, load_within
from mmtune.durations import budget_seconds
from mmtune.errors import InputError
from mmtune.models.adapters import check_lora_numbers
from mmtune.models.internvl_chat.cache import native_checkpoint
from mmtune.models.vlm_families import family_of, load_processor
from mmtune.models.vlm_inputs import image_budget_kwargs
from mmtune.models.vlm_loading import LoadedVlm, load_weights, lora_targets
from mmtune.progress import progress
from mmtune.training.budget import StopSignals, TimeBudget
from mmtune.training.loop import agreed_stop, resolve_mixed_precision
from mmtune.training.optim import scaled_learning_rates
from mmtune.training.resume import check_resume
from mmtune.training.run_folder import make_run_dir
from mmtune.training.trackers import installed_trackers, run_name, wandb_settings

log = logging.getLogger(__name__)

_OPTIMIZERS = {"adamw": "adamw_torch", "adamw_8bit": "adamw_bnb_8bit"}
_SCHEDULES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


@dataclass(frozen=True)
class LearningRate:
    given: float
    reference_batch: int
    effective_batch: int
    rule: str
    value: float


def resolve_learning_rate(cfg: Config) -> tuple[Config, LearningRate]:
    """Apply `train.lr_scaling` for the effective batch; the returned config holds the resolved rate (and
    `lr_scaling: none` at that batch), so the run's config.yaml states the rate that was used."""
    if cfg.train.batch_size < 1 or cfg.train.grad_accum < 1:
        raise InputError("train.batch_size and train.grad_accum: give sizes of at least 1 for sft, dpo and build-vlm")
    effective = cfg.train.batch_size * cfg.train.grad_accum * processes().num_processes
    value = scaled_learning_rates(cfg.train, effective).backbone
    rate = LearningRate(given=cfg.train.lr, reference_batch=cfg.train.reference_batch_size,
                        effective_batch=effective, rule=cfg.train.lr_scaling, value=value)
    resolved = replace(cfg.train, lr=value, lr_scaling="none", reference_batch_size=effective)
    return replace(cfg, train=resolved), rate


def processes() -> Any:
    """Accelerate's view of the launched processes. Why cpu=True without a GPU: only then does Accelerate join
    torchrun's processes (over gloo); a plain PartialState() there sees one process per rank."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def prepare_run(cfg: Config, resume: bool) -> tuple[Config, Path, LearningRate]:
    """Resolve the learning rate, check that a fresh run overwrites nothing (and a resumed one kept its config),
    write config.yaml and learning_rate.json (the main process only)."""
    cfg, rate = resolve_learning_rate(cfg)
    run_dir = Path(cfg.output_dir)
    if not resume and run_dir.is_dir() and get_last_checkpoint(str(run_dir)):
        raise InputError(f"{run_dir} already holds a run (checkpoint-*): pass --resume to continue it, "
                         "or set another output_dir")
    if resume and not (run_dir.is_dir() and get_last_checkpoint(str(run_dir))):
        raise InputError(f"{run_dir}: no checkpoint-* to resume from")
    check_resume(run_dir, cfg, resume)
    state = processes()
    if state.is_main_process:  # one writer: under a launcher every rank runs this, and concurrent writes tear files
        make_run_dir(run_dir)
        save_config(cfg, run_dir / "config.yaml")
        (run_dir / "learning_rate.json").write_text(json.dumps(rate.__dict__, indent=1), encoding="utf-8")
    state.wait_for_everyone()  # the others check this run's files only once they are written
    log.info(f"learning rate {rate.value:.3g} (given {rate.given:.3g} at batch {rate.reference_batch}, "
             f"effective batch {rate.effective_batch}, rule {rate.rule})")
    return cfg, run_dir, rate


def trainer_arguments(cfg: Config, run_dir: Path, has_eval: bool) -> dict[str, Any]:
    """Keyword arguments shared by TRL's SFTConfig and DPOConfig, from mmtune's `train` and `model` sections."""
    train = cfg.train
    precision = resolve_mixed_precision(train.mixed_precision)
    return {
        "output_dir": str(run_dir), "num_train_epochs": train.epochs, "per_device_train_batch_size": train.batch_size,
        "per_device_eval_batch_size": train.batch_size, "gradient_accumulation_steps": train.grad_accum,
        "learning_rate": train.lr, "weight_decay": train.weight_decay, "lr_scheduler_type": _SCHEDULES[train.schedule],
        "warmup_steps": train.warmup_ratio, "max_grad_norm": train.max_grad_norm or 1e9,
        "optim": _OPTIMIZERS[train.optimizer], "seed": cfg.seed, "data_seed": cfg.seed,
        "bf16": precision == "bf16", "fp16": precision == "fp16",
        "gradient_checkpointing": cfg.model.gradient_checkpointing,
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
        "logging_steps": max(1, train.log_every_steps),
        "report_to": installed_trackers(train.log_with), "run_name": run_name(run_dir),
        "save_strategy": "steps" if train.save_every_steps else "epoch",
        "save_steps": train.save_every_steps or 500, "save_total_limit": 2,
        "eval_strategy": ("steps" if train.eval_every_steps else "epoch") if has_eval else "no",
        "eval_steps": train.eval_every_steps or None, "dataloader_num_workers": train.num_workers,
        "remove_unused_columns": False, "trust_remote_code": cfg.model.trust_remote_code,
        "max_length": cfg.chat.max_length,
        # As `processes()`: without it, ranks launched on a CPU-only machine each train alone on every row.
        "use_cpu": not torch.cuda.is_available(),
    }


def load_vlm(cfg: Config, name: str | None = None) -> tuple[torch.nn.Module, Any]:
    """The VLM and its processor from `model.name` (4-/8-bit with `model.quantize`)."""
    name = name or cfg.model.name
    if not name:
        raise InputError("model.name: the VLM to fine-tune (a Hub id or a folder)")
    name = native_checkpoint(name)
    kwargs = {"trust_remote_code": cfg.model.trust_remote_code}
    try:
        processor = load_processor(name, **kwargs)
        # As for the classifier kinds: a LoRA base on a GPU in half precision (model.vlm.dtype), QLoRA in 4-/8-bit.
        model = load_weights(AutoModelForImageTextToText, replace(cfg.model, name=name), kwargs)
    except InputError:
        raise
    except (OSError, ValueError) as error:
        raise InputError(f"model.name: cannot load the VLM '{name}' ({str(error).strip().splitlines()[0][:200]})"
                         ) from None
    if getattr(processor, "chat_template", None) is None:
        raise InputError(f"model.name: {name} has no chat template in its processor (chat_template.jinja)")
    bound_image_tokens(model, processor, name, cfg)
    return model, processor


def bound_image_tokens(model: torch.nn.Module, processor: Any, name: str, cfg: Config) -> None:
    """model.vlm.max_tiles / max_pixels as the image processor's own settings. Why not per call, as the classifier
    kinds pass them: TRL's collators call the processor themselves, with its defaults (SmolVLM would split every
    image into tiles, InternVL tile as its processor says, Qwen2-VL spend tokens by the image's pixels)."""
    family = family_of(model.config, name)
    image_processor = getattr(processor, "image_processor", None)
    if not family.has_vision or image_processor is None:
        return
    loaded = LoadedVlm(model, processor, processor.tokenizer, family)
    for key, value in image_budget_kwargs(loaded, cfg.model.vlm).items():
        setattr(image_processor, key, value)


def compute_dtype(cfg: Config) -> torch.dtype:
    """The precision the run computes in (train.mixed_precision): what frozen weights are built or kept in."""
    precision = resolve_mixed_precision(cfg.train.mixed_precision)
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def upcast_trainable(model: torch.nn.Module) -> None:
    """Trained weights in fp32 on a half-precision base: AdamW steps below bf16's resolution are lost, and the
    fp16 grad scaler refuses fp16 parameters. (QLoRA keeps TRL's choice of bf16 adapters.)"""
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.float16, torch.bfloat16):
            param.data = param.data.float()


def make_trainer(verb: str, trainer_cls: type, cfg: Config, **kwargs: Any) -> Any:
    """A TRL trainer built from `kwargs`; the ValueErrors TRL raises on data or settings are exit 2 naming `verb`."""
    try:
        trainer = trainer_cls(**kwargs)
    except ValueError as error:
        raise InputError(f"{verb}: {error}") from None
    if cfg.model.quantize == "none":
        upcast_trainable(trainer.model)
    return trainer


def lora_config(cfg: Config, model: torch.nn.Module, modules_to_save: list[str] | None = None) -> Any:
    """peft's LoraConfig on the language model's projections (the same layers the classifier kinds adapt; the
    vision tower too with model.vlm.lora_vision), with the number and target checks of `apply_lora`."""
    from peft import LoraConfig

    lora = cfg.model.lora
    check_lora_numbers(lora.r, lora.alpha, lora.dropout)
    targets = lora_targets(model, lora.targets, cfg.model.vlm.lora_vision)
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, use_dora=lora.dora, bias="none",
                      target_modules=targets, modules_to_save=modules_to_save, task_type="CAUSAL_LM")


def with_images(dataset: Any, max_pixels: int, side: int, max_bytes: int) -> Any:
    """Image paths become RGB images only when rows are read (safe loading, EXIF orientation applied), shrunk to
    `side` pixels on their longer side (model.vlm.image_size): a processor that sizes its tokens by the pixels
    (Qwen2-VL) would otherwise spend thousands of tokens on a phone photo and hit chat.max_length."""
    def load(batch: dict[str, list]) -> dict[str, list]:
        batch["images"] = [[_open(path, max_pixels, side, max_bytes) for path in paths] for paths in batch["images"]]
        return batch

    return dataset.with_transform(load)


def _open(path: str, max_pixels: int, side: int, max_bytes: int) -> Any:
    try:
        return load_within(Path(path), max_pixels, side, max_bytes=max_bytes)
    except (ImageError, OSError) as error:
        raise InputError(f"{path}: unreadable image ({error})") from None


class RunCallback(TrainerCallback):
    """Stops and saves a resumable checkpoint before `train.time_budget` ends or on SIGTERM / Ctrl-C, and
    appends every log line to metrics.jsonl. The reserve follows `TimeBudget`: the slowest step, and the
    slowest gap between steps (where the trainer evaluates and saves). The budget counts from `started`, by default
    the start of the process (loading the model and the data spend it too)."""

    def __init__(self, cfg: Config, run_dir: Path, signals: StopSignals, started: float | None = None,
                 accelerator: Any = None) -> None:
        self.accelerator = accelerator  # the trainer's: under a launcher the processes agree on when to stop
        self.budget = TimeBudget(budget_seconds(cfg.train.time_budget), started=started)
        self.signals = signals
        self.metrics = run_dir / "metrics.jsonl"
        self.stopped = "finished"
        self._step_started = 0.0
        self._step_ended: float | None = None

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._step_started = time.monotonic()
        if self._step_ended is not None:
            self.budget.record_eval_and_save(self._step_started - self._step_ended)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._step_ended = time.monotonic()
        self.budget.record_step(self._step_ended - self._step_started)
        reason = "signal" if self.signals.received is not None else "time_budget" if self.budget.should_stop() else None
        if self.accelerator is not None:
            reason = agreed_stop(self.accelerator, reason)
        if reason is not None and state.global_step < state.max_steps:
            self.stopped = reason
            control.should_save = True
            control.should_training_stop = True

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if state.is_world_process_zero and logs:
            with self.metrics.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")


class LogCallback(TrainerCallback):
    """TRL's steps and metrics as mmtune shows them: one bar (a progress line outside a terminal) and one log line
    of numbers per logging step, in place of transformers' printed dicts of quoted strings and the evaluation bar
    it nests inside the training bar (cursor-up `[A` sequences in a log file)."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.done = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self.done = state.global_step
            self.bar = progress(state.max_steps, "training", unit="step", initial=self.done)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.done)
            self.done = state.global_step

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if state.is_world_process_zero and logs:
            log.info(metrics_line(state.global_step, logs))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def metrics_line(step: int, logs: dict[str, Any]) -> str:
    """`step 10: loss 0.6931, grad_norm 1.52, learning_rate 5e-05, epoch 0.5`: numbers as numbers."""
    shown = [f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
             for key, value in logs.items() if key != "total_flos"]
    return f"step {step}: {', '.join(shown)}"


def run_trainer(trainer: Any, callback: RunCallback, resume: bool) -> str:
    for printer in (ProgressCallback, PrinterCallback):
        trainer.remove_callback(printer)
    trainer.add_callback(LogCallback())
    trainer.add_callback(callback)
    restored = resume and restore_full_weights(trainer.model, Path(get_last_checkpoint(trainer.args.output_dir)))
    trainer_log = logging.getLogger("transformers.trainer")
    quiet = _WrongLayoutWarnings()
    if restored:  # the trainer's own load then reports every key as missing, of weights already in place
        trainer_log.addFilter(quiet)
    wandb_run = start_trackers(trainer)
    try:
        with callback.signals:
            trainer.train(resume_from_checkpoint=True if resume else None)
    finally:
        trainer_log.removeFilter(quiet)
        if wandb_run is not None:
            wandb_run.finish()
    return callback.stopped


class _WrongLayoutWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("There were missing keys in the checkpoint model loaded",
                                                   "There were unexpected keys in the checkpoint model loaded"))


def restore_full_weights(model: torch.nn.Module, checkpoint: Path) -> bool:
    """The weights of a model trained without LoRA, as `checkpoint` saved them. Why not leave it to the trainer:
    it resumes a full model with a plain `load_state_dict` of the file, whose keys `save_pretrained` wrote in the
    checkpoint layout (LLaVA: `language_model.model.*`, `multi_modal_projector.*`), so none match the modules'
    names and every weight silently stays where training started. Each saved key is mapped back to the model's own
    tensor through the conversion `save_pretrained` applied. (Adapters resume through peft, which is right.)
    Returns whether it restored the weights (False for a peft model)."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers.core_model_loading import revert_weight_conversion

    if isinstance(model, PeftModel):
        return False
    own = model.state_dict(keep_vars=True)
    name_of = {id(tensor): name for name, tensor in own.items()}
    saved_as = {saved: name_of[id(tensor)] for saved, tensor in revert_weight_conversion(model, dict(own)).items()
                if id(tensor) in name_of}
    index = checkpoint / "model.safetensors.index.json"
    files = (sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())) if index.is_file()
             else ["model.safetensors"])
    restored: dict[int, torch.Tensor] = {}
    for file in files:
        for key, tensor in load_file(str(checkpoint / file)).items():
            if key in saved_as:
                restored[id(own[saved_as[key]])] = tensor
    missing = [name for name, param in model.named_parameters() if param.requires_grad and id(param) not in restored]
    if missing:
        raise InputError(f"{checkpoint}: no saved weights for {', '.join(missing[:3])}; cannot resume this run")
    with torch.no_grad():
        for tensor in own.values():
            if id(tensor) in restored:
                tensor.copy_(restored[id(tensor)])
    return True


def start_trackers(trainer: Any) -> Any:
    """The trackers where mmtune's own loop puts them (training/trackers): TensorBoard's event files in the run
    folder (transformers would write output_dir/runs/<date>_<host>), W&B's run named after the run folder in
    run_dir/wandb (its callback then logs to that run). Returns the W&B run this started, to finish."""
    args = trainer.args
    run_dir = Path(args.output_dir)
    if "tensorboard" in args.report_to:
        trainer.remove_callback(TensorBoardCallback)
        if trainer.is_world_process_zero():
            from torch.utils.tensorboard import SummaryWriter

            trainer.add_callback(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(run_dir))))
    if "wandb" in args.report_to and trainer.is_world_process_zero():
        import wandb

        return wandb.init(**wandb_settings(run_dir, args.run_name))
    return None


TrainerFactory = Callable[[Config, Any, Any, Any, Path, Any], Any]


def train_with_trl(cfg: Config, resume: bool, splits: Any, make_trainer: TrainerFactory) -> str:
    """The run around a TRL trainer (sft, dpo): run folder, model with its adapters, budget and signal stops,
    export when finished. `make_trainer(cfg, model, processor, splits, run_dir, peft_config)` builds the trainer;
    returns why training stopped (finished, time_budget, signal)."""
    cfg, run_dir, _ = prepare_run(cfg, resume)
    model, processor = load_vlm(cfg)
    peft_config = lora_config(cfg, model) if cfg.model.lora.enabled else None
    if cfg.model.quantize != "none" and peft_config is None:
        raise InputError("model.quantize: 4-/8-bit weights cannot be trained directly; set model.lora.enabled")
    trainer = make_trainer(cfg, model, processor, splits, run_dir, peft_config)
    callback = RunCallback(cfg, run_dir, StopSignals(), accelerator=trainer.accelerator)
    stopped = run_trainer(trainer, callback, resume)
    if stopped == "finished":
        export_model(trainer, processor, cfg, run_dir)
    return stopped


def export_model(trainer: Any, processor: Any, cfg: Config, run_dir: Path) -> Path:
    """Save the trained model as a plain transformers folder (adapters merged) in run_dir/model, and the adapters
    alone in run_dir/adapter: the folder works as `model.name` anywhere, including mmtune's classifier kinds."""
    from peft import PeftModel

    out = run_dir / "model"
    if not trainer.accelerator.is_main_process:
        return out
    model = trainer.model
    if isinstance(model, PeftModel):
        model.save_pretrained(run_dir / "adapter")
        if cfg.model.quantize != "none":
            # Merging into 4-/8-bit weights loses the adapters' precision: merge into an unquantized base (in the
            # run's precision: bf16 / fp16 on GPUs, fp32 on CPUs).
            base = AutoModelForImageTextToText.from_pretrained(cfg.model.name, dtype=compute_dtype(cfg),
                                                               trust_remote_code=cfg.model.trust_remote_code)
            model = PeftModel.from_pretrained(base, run_dir / "adapter")
        model = model.merge_and_unload()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out

