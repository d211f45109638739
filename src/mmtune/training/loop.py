"""The one training loop, on Accelerate, for every Classifier kind.

Skeleton (as in torchtune recipes): `setup` builds loaders, loss, optimizer and schedule and
restores `last/` when resuming; `train` runs epochs of optimizer steps with evaluation, best/last
checkpoints, early stopping, the time budget and signal stops; `cleanup` ends the trackers.
Nothing here knows which kind it trains: it sees `prepare`d examples, `collate` and class outputs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, DistributedType
from torch import nn
from torch.utils.data import DataLoader

from mmtune.compat import allow_mixed_precision, cache_accelerate_lomo_check
from mmtune.config import Config, config_yaml, flat_dict
from mmtune.durations import budget_seconds
from mmtune.evaluation.metrics import evaluate_probs, is_better, selection_value
from mmtune.models.base import Example
from mmtune.objectives import get_objective
from mmtune.progress import progress as progress_bar
from mmtune.training import checkpoint as ckpt
from mmtune.training.budget import StopSignals, TimeBudget
from mmtune.training.inference import eval_batch_size, make_loader, predict_probs
from mmtune.training.optim import build_optimizer, build_scheduler, scale_backbone_lr, scaled_learning_rates
from mmtune.training.sampler import EpochSampler, balanced_weights
from mmtune.training.trackers import accelerate_trackers, run_name
from mmtune.training.weight_average import WeightAverage

log = logging.getLogger(__name__)

# Reasons to stop between steps, by precedence: the processes agree on the highest any of them has.
_STOPS: tuple[str | None, ...] = (None, "time_budget", "signal")
# Seconds between writes of the training records to the trackers (evaluations and the end also write them).
TRACKER_WRITE_S = 30.0


def agreed_stop(accelerator: Accelerator, stop: str | None) -> str | None:
    """The stop every process takes at this step (None, time_budget or signal): the budget is timed per process
    and a signal reaches the ranks between different steps, and a rank that stopped alone would leave the others
    waiting forever in the next collective."""
    if accelerator.num_processes == 1:
        return stop
    code = torch.tensor([_STOPS.index(stop)], device=accelerator.device)
    return _STOPS[int(accelerator.reduce(code, reduction="max").item())]


def resolve_mixed_precision(setting: str) -> str:
    """auto: bf16 where the GPU supports it, fp16 (+ grad scaler) on older GPUs such as the T4, none on CPU."""
    if setting != "auto":
        return setting
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def make_accelerator(cfg: Config, run_dir: Path, name: str | None = None) -> Accelerator:
    """The run's Accelerator; `name`: what the trackers call the run (default: the run folder's name)."""
    cache_accelerate_lomo_check()
    trackers = accelerate_trackers(cfg.train.log_with, run_dir, run_name(run_dir, name))
    two_stage = cfg.model.freeze.head_only_epochs > 0
    precision = resolve_mixed_precision(cfg.train.mixed_precision)
    allow_mixed_precision(precision)  # a notebook (or a test session) trains runs of other precisions before
    return Accelerator(
        # Why cpu=True without a GPU: only then does Accelerate join torchrun's processes over gloo.
        cpu=not torch.cuda.is_available(),
        mixed_precision=precision,
        gradient_accumulation_steps=cfg.train.grad_accum,
        log_with=trackers or None,
        project_dir=str(run_dir),
        # Why: in the head-only stage the backbone gets no gradients, which DDP must be told about.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=two_stage)],
    )


def direct_steps(accelerator: Accelerator, grad_accum: int) -> bool:
    """Whether optimizer steps can bypass Accelerate's per-step wrappers: one plain process, every batch an
    optimizer step and no grad scaler. Then `accumulate`, `backward`, `clip_grad_norm_` and
    `AcceleratedOptimizer.step`/`zero_grad` reduce to the torch calls they wrap (same numbers: the loss is divided
    by 1), yet cost ~0.25 ms per step, a sixth of a head-only step on cached features."""
    return (accelerator.num_processes == 1 and accelerator.distributed_type == DistributedType.NO
            and grad_accum == 1 and accelerator.scaler is None)


@dataclass
class EvalResult:
    metrics: dict[str, Any]
    probs: np.ndarray  # [N, K] in dataset order
    value: float


class TrainingLoop:
    def __init__(self, cfg: Config, classifier: nn.Module, accelerator: Accelerator, run_dir: Path,
                 config_hash: str, on_eval: Callable[[int, float], bool] | None = None) -> None:
        self.cfg = cfg
        # (epoch, selection value) after each evaluation; True stops the run like early stopping (a tuner's pruner).
        self.on_eval = on_eval
        self.classifier = classifier
        self.accelerator = accelerator
        self.run_dir = run_dir
        self.labels: list[str] = list(classifier.labels)
        self.objective = get_objective(cfg.train.loss)
        self.state = ckpt.LoopState(config_hash=config_hash)
        self.budget = TimeBudget(budget_seconds(cfg.train.time_budget))
        self.trainable_names = list(classifier.trainable_parameter_names())
        # Kinds with their own training loss (vlm-generative's lm objective) return it from forward in training.
        self._kind_loss = bool(getattr(classifier, "provides_loss", False))
        self._resume_rng: dict[str, Any] | None = None
        self._pending_logs: list[tuple[int, dict[str, float]]] = []  # training records not yet in the trackers
        self._logs_written = time.monotonic()

    # ------------------------------------------------------------------------------------ setup

    def setup(self, train: Sequence[Example], val: Sequence[Example], resume: bool) -> None:
        cfg, accelerator = self.cfg, self.accelerator
        targets = [example.target for example in train]
        counts = np.bincount(targets, minlength=len(self.labels)).tolist()
        self.loss_fn = self.objective.build_loss(counts, self.labels, cfg.train).to(accelerator.device)
        self.sampler = EpochSampler(len(train), seed=cfg.seed, weights=self._sample_weights(targets))
        self.train_loader = self.make_loader(train, self.sampler, train=True)
        self.val_loader = self.make_loader(val, None, train=False)
        steps_per_epoch = math.ceil(len(self.train_loader) / max(1, accelerator.num_processes) / cfg.train.grad_accum)
        self.total_steps = steps_per_epoch * cfg.train.epochs
        effective = cfg.train.batch_size * cfg.train.grad_accum * accelerator.num_processes
        self.rates = scaled_learning_rates(cfg.train, effective)
        log.info(f"effective batch {effective}: learning rates x{self.rates.factor:.3g} "
                 f"({cfg.train.lr_scaling}) -> head {self.rates.head:.3g}, backbone {self.rates.backbone:.3g}")
        optimizer = build_optimizer(self.classifier, self.classifier.parameter_groups(), cfg.train, self.rates)
        self.scheduler = build_scheduler(optimizer, cfg.train, self.total_steps)
        self.model, self.optimizer, self.train_loader, self.val_loader = accelerator.prepare(
            self.classifier, optimizer, self.train_loader, self.val_loader)
        # Every parameter any stage trains; clipping skips those without gradients (head-only stage).
        # Listed once: walking the module tree every step costs milliseconds on small heads.
        wanted = set(self.trainable_names)
        trainable = {n: p for n, p in self.classifier.named_parameters() if n in wanted}
        self._clip_params = list(trainable.values())
        self._direct = direct_steps(accelerator, cfg.train.grad_accum)
        self.average = self._weight_average(trainable)
        if resume:
            self._restore()
        else:
            self._keep_metrics([])  # lines of an attempt killed before its first checkpoint
        self._apply_stage(self.state.epoch, initial=True)
        if accelerator.log_with:
            self._start_trackers()

    def _weight_average(self, trainable: dict[str, nn.Parameter]) -> WeightAverage | None:
        decay = self.cfg.train.ema_decay
        if not decay:
            return None
        if self.accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            # Their parameters are shards (or flattened), not the named tensors a checkpoint holds.
            log.warning(f"train.ema_decay={decay:g} is not used under {self.accelerator.distributed_type.value}: "
                        "the raw weights are evaluated and saved")
            return None
        return WeightAverage({n: p for n, p in trainable.items() if p.is_floating_point()}, decay)

    def _start_trackers(self) -> None:
        """Start the trackers with the run's config: W&B's run config; TensorBoard's text tab (its hparams would
        make a second, timestamp-named run in the run folder)."""
        accelerator = self.accelerator
        accelerator.init_trackers(self.run_dir.name)  # the name is the trackers' own (make_accelerator)
        if not accelerator.is_main_process:
            return
        for tracker in accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.writer.add_text("config", f"```\n{config_yaml(self.cfg)}```")
            else:
                tracker.store_init_configuration(
                    {k: v for k, v in flat_dict(self.cfg).items() if isinstance(v, (int, float, str, bool))})

    def _sample_weights(self, targets: list[int]) -> list[float] | None:
        sampler = self.cfg.train.sampler
        if sampler == "random":
            return None
        return balanced_weights(targets, power=1.0 if sampler == "balanced" else 0.5)

    def make_loader(self, examples: Sequence[Example], sampler: EpochSampler | None, train: bool) -> DataLoader:
        train_cfg = self.cfg.train
        batch_size = train_cfg.batch_size if train else eval_batch_size(train_cfg.batch_size)
        return make_loader(self.classifier, examples, batch_size, self.cfg.seed, train_cfg.num_workers, sampler, train)

    # ------------------------------------------------------------------------------------ train

    def train(self) -> str:
        """Run until done; returns why it stopped: finished, early_stopping, time_budget or signal."""
        cfg, accelerator = self.cfg, self.accelerator
        with StopSignals() as signals:
            while self.state.epoch < cfg.train.epochs:
                stopped = self._train_epoch(signals)
                if stopped:
                    return stopped
                if self._end_of_epoch():
                    return "early_stopping"
        self.state.finished = True
        self.save_last()
        accelerator.wait_for_everyone()
        return "finished"

    def _train_epoch(self, signals: StopSignals) -> str | None:
        accelerator, state = self.accelerator, self.state
        self._apply_stage(state.epoch)
        # Why through the loader: Accelerate's loader counts its own epochs and passes them to the
        # sampler on every iteration; a resumed run must start that count at the right epoch.
        self.train_loader.set_epoch(state.epoch)
        loader = self.train_loader
        if state.batches_done:
            loader = accelerator.skip_first_batches(loader, state.batches_done)
        batches = iter(loader)
        if self._resume_rng is not None and state.batches_done:
            # Mid-epoch resume: starting the iterator may draw from the global RNG, which the straight
            # run did before the checkpoint, so the restored state is put back after it.
            ckpt.set_rng_state(self._resume_rng)
        self._resume_rng = None
        self.model.train()
        progress = progress_bar(len(self.train_loader), f"epoch {state.epoch + 1}", unit="batch",
                                initial=state.batches_done, disable=not accelerator.is_local_main_process)
        losses: list[float] = []
        started = time.monotonic()
        for batch in batches:
            losses.append(self._step(batch))
            state.losses_since_eval.append(losses[-1])
            state.batches_done += 1
            progress.update(1)
            if not self._direct and not accelerator.sync_gradients:
                continue
            self.scheduler.step()
            if self.average is not None:
                self.average.update()
            state.global_step += 1
            self.budget.record_step(time.monotonic() - started)
            started = time.monotonic()
            self._log_step(losses)
            stop = self._between_steps(signals)
            if stop:
                progress.close()
                return stop
        progress.close()
        return None

    def _step(self, batch: dict[str, Any]) -> float:
        batch.pop("index")
        target = batch.pop("target")
        if self._direct:
            return self._direct_step(batch, target)
        with self.accelerator.accumulate(self.model):
            outputs = self.model(batch)
            loss = outputs if self._kind_loss else self.loss_fn(outputs.float(), target)
            self.accelerator.backward(loss)
            if self.accelerator.sync_gradients and self.cfg.train.max_grad_norm > 0:
                self.accelerator.clip_grad_norm_(self._clip_params, self.cfg.train.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def _direct_step(self, batch: dict[str, Any], target: torch.Tensor) -> float:
        """`_step` when `direct_steps` holds: the same torch calls without Accelerate's wrappers. The optimizer's
        state is the wrapped one's, so checkpoints and resume do not depend on which of the two ran."""
        outputs = self.model(batch)
        loss = outputs if self._kind_loss else self.loss_fn(outputs.float(), target)
        loss.backward()
        if self.cfg.train.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self._clip_params, self.cfg.train.max_grad_norm)
        optimizer = self.optimizer.optimizer
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def _log_step(self, losses: list[float]) -> None:
        # Every train.log_every_steps optimizer steps, kept here and written in batches (_write_logs).
        step = self.state.global_step
        if not self.accelerator.trackers or step % max(1, self.cfg.train.log_every_steps):
            return
        self._pending_logs.append((step, {"train/loss": losses[-1], "train/lr": self.scheduler.get_last_lr()[0]}))
        if time.monotonic() - self._logs_written >= TRACKER_WRITE_S:
            self._write_logs()

    def _write_logs(self) -> None:
        """The training records kept since the last write, to every tracker. Why batched: one TensorBoard write
        (`tracker.log`) flushes the event file and wakes its writer thread, ~0.5 ms, which every 10 head-only
        steps on cached features was 2% of the training time; here one flush covers all the records."""
        pending, self._pending_logs = self._pending_logs, []
        self._logs_written = time.monotonic()
        if not pending:
            return
        for tracker in self.accelerator.trackers:
            if tracker.name != "tensorboard":
                for step, values in pending:
                    tracker.log(values, step=step)
                continue
            for step, values in pending:
                for key, value in values.items():
                    tracker.writer.add_scalar(key, value, global_step=step)
            tracker.writer.flush()

    def _between_steps(self, signals: StopSignals) -> str | None:
        train_cfg, state = self.cfg.train, self.state
        if train_cfg.eval_every_steps and state.global_step % train_cfg.eval_every_steps == 0:
            if self._evaluate_and_keep_best(kind="step"):
                return "early_stopping"
        if train_cfg.save_every_steps and state.global_step % train_cfg.save_every_steps == 0:
            self.save_last()
        stop = self._agreed_stop("signal" if signals.received is not None
                                 else "time_budget" if self.budget.should_stop() else None)
        if stop == "signal":
            log.warning(f"stop signal received: saving {self.run_dir / 'last'} and stopping")
        elif stop == "time_budget":
            log.warning(f"time budget {self.cfg.train.time_budget} nearly spent after "
                        f"{self.budget.elapsed() / 60:.1f} min: saving {self.run_dir / 'last'}; continue with --resume")
        if stop is not None:
            self.save_last()
        return stop

    def _agreed_stop(self, stop: str | None) -> str | None:
        return agreed_stop(self.accelerator, stop)

    def _end_of_epoch(self) -> bool:
        self.state.epoch += 1
        self.state.batches_done = 0
        started = time.monotonic()
        stop = self._evaluate_and_keep_best(kind="epoch")
        self.save_last()
        self.budget.record_eval_and_save(time.monotonic() - started)
        return stop

    # ------------------------------------------------------------------------------- evaluation

    def predict_probs(self, loader: DataLoader) -> tuple[np.ndarray, np.ndarray]:
        """[N, K] class probabilities and targets in dataset order; the model trains on afterwards."""
        probs = predict_probs(self.model, loader, self.objective, self.labels, self.accelerator)
        self.model.train()
        return probs

    def evaluate(self) -> EvalResult:
        probs, targets = self.predict_probs(self.val_loader)
        metrics = evaluate_probs(probs, targets, self.labels)
        return EvalResult(metrics, probs, selection_value(metrics, self.cfg.train.metric))

    def _evaluate_and_keep_best(self, kind: str) -> bool:
        """Evaluate, record, save best/ on improvement; True when early stopping says stop. With train.ema_decay the
        weight average is what is evaluated and saved."""
        state, metric = self.state, self.cfg.train.metric
        with self.average.swapped_in() if self.average is not None else contextlib.nullcontext():
            result = self.evaluate()
            # A full fit has no held-out posts to choose by: its best/ is always the latest evaluation.
            improved = self.cfg.train.full_fit or is_better(metric, result.value, state.best_value)
            if improved:
                state.best_value, state.best_step = result.value, state.global_step
                state.evals_without_improvement = 0
                self.save_best(result)
            else:
                state.evals_without_improvement += 1
        train_loss = float(np.mean(state.losses_since_eval)) if state.losses_since_eval else None
        state.losses_since_eval = []
        scalars = {k: v for k, v in result.metrics.items() if not isinstance(v, (dict, list))}
        record = {"kind": kind, "epoch": state.epoch, "step": state.global_step, "train_loss": train_loss,
                  metric: result.value, "best": state.best_value, **scalars,
                  "per_class_f1": {k: v["f1"] for k, v in result.metrics["per_class"].items()},
                  "lr": self.scheduler.get_last_lr()[0], "elapsed_s": round(self.budget.elapsed(), 2)}
        state.history.append(record)
        if self.accelerator.is_main_process:
            with (self.run_dir / "metrics.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        if self.accelerator.trackers:
            self._write_logs()
            self.accelerator.log({f"val/{k}": v for k, v in record.items() if isinstance(v, (int, float))},
                                 step=state.global_step)
        log.info(f"epoch {state.epoch} step {state.global_step}: {metric} {result.value:.4f} "
                 f"(best {state.best_value:.4f} at step {state.best_step})")
        if self.on_eval is not None and self.on_eval(state.epoch, result.value):
            return True
        patience = self.cfg.train.early_stopping_patience
        return bool(patience) and state.evals_without_improvement >= patience

    # ------------------------------------------------------------------------------ two stages

    def _apply_stage(self, epoch: int, initial: bool = False) -> None:
        head_only = self.cfg.model.freeze.head_only_epochs
        if not head_only:
            return
        in_head_stage = epoch < head_only
        self.classifier.set_backbone_trainable(not in_head_stage)
        if not in_head_stage and epoch == head_only and self.state.batches_done == 0 and not initial:
            scale_backbone_lr(self.scheduler, self.optimizer, self.cfg.train.backbone_lr_factor)
            log.info(f"stage 2: backbone unfrozen, its learning rate x{self.cfg.train.backbone_lr_factor:g}")

    # ----------------------------------------------------------------------------- checkpoints

    def save_best(self, result: EvalResult) -> None:
        accelerator = self.accelerator
        final = self.run_dir / "best"
        if accelerator.is_main_process:
            folder = ckpt.begin(final)
            weights = ckpt.trainable_state(accelerator.unwrap_model(self.model), self.trainable_names)
            ckpt.write_weights(folder, weights, {"labels": self.labels, "step": self.state.global_step})
            (folder / "metrics.json").write_text(json.dumps(result.metrics, indent=1), encoding="utf-8")
            np.save(folder / "val_probs.npy", result.probs)
            ckpt.commit(final)
        accelerator.wait_for_everyone()

    def save_last(self) -> None:
        accelerator = self.accelerator
        final = self.run_dir / "last"
        if accelerator.is_main_process:
            ckpt.begin(final)
        accelerator.wait_for_everyone()
        folder = ckpt.staging_dir(final)
        ckpt.write_rng(ckpt.rng_file(folder, accelerator.process_index), ckpt.rng_state())
        if accelerator.is_main_process:
            weights = ckpt.trainable_state(accelerator.unwrap_model(self.model), self.trainable_names)
            ckpt.write_weights(folder, weights, {"labels": self.labels})
            if self.average is not None:
                self.average.save(folder)
            torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), folder / "scheduler.pt")
            if accelerator.scaler is not None:
                torch.save(accelerator.scaler.state_dict(), folder / "scaler.pt")
            ckpt.write_state(folder, self.state)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            ckpt.commit(final)
        accelerator.wait_for_everyone()

    def _restore(self) -> None:
        folder = ckpt.resolve(self.run_dir / "last")
        if folder is None:
            log.info("no last/ checkpoint to resume from: starting from the beginning")
            self._keep_metrics([])
            return
        state = ckpt.read_state(folder)
        ckpt.load_weights(self.accelerator.unwrap_model(self.model), folder, self.labels)
        if self.average is not None and not self.average.load(folder):
            log.warning(f"{folder} holds no weight average (saved with train.ema_decay 0): averaging starts from "
                        "the resumed weights")
        ckpt.load_state_into(self.optimizer, folder / "optimizer.pt")
        ckpt.load_state_into(self.scheduler, folder / "scheduler.pt")
        if self.accelerator.scaler is not None and (folder / "scaler.pt").exists():
            ckpt.load_state_into(self.accelerator.scaler, folder / "scaler.pt")
        rng_file = ckpt.rng_file(folder, self.accelerator.process_index)
        if rng_file.exists():
            self._resume_rng = ckpt.read_rng(rng_file)
            ckpt.apply_rng_state(self._resume_rng, rng_file)
        else:
            log.warning(f"{rng_file} missing: resuming with fresh random states (not bit-identical to a straight run)")
        state.config_hash = self.state.config_hash
        self.state = state
        self._keep_metrics(state.history)
        log.info(f"resumed from {folder}: epoch {state.epoch}, batch {state.batches_done}, step {state.global_step}")

    def _keep_metrics(self, history: list[dict[str, Any]]) -> None:
        """metrics.jsonl back to the checkpoint's evaluations: a kill between an evaluation's line and the next
        save left lines the resumed run writes again (and may have cut the last line short)."""
        path = self.run_dir / "metrics.jsonl"
        if not self.accelerator.is_main_process or not path.exists():
            return
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(record) + "\n" for record in history), encoding="utf-8")
        os.replace(tmp, path)

    def cleanup(self) -> None:
        # Why not accelerator.end_training(): it also destroys the process group, and trackers live on
        # the main process only, so one rank would tear the group down while the others still use it
        # (and a CV run trains several folds in one process). The CLI releases the group at exit.
        self.accelerator.wait_for_everyone()
        self._write_logs()
        for tracker in self.accelerator.trackers:
            tracker.finish()
