"""`mmtune tune`: hyper-parameter search on Optuna over the keys of `tune.space`.

Each trial is the config plus one `key=value` override per searched key (the config loader types and checks
them), trained on the first `tune.folds` folds of one shared folds.csv (output_dir/folds.csv); its value is the
mean of the folds' best validation `train.metric`. TPE samples; with `tune.pruning` a median pruner stops a
trial at an epoch where it falls below the median of earlier trials (step = fold * train.epochs + epoch).
Frozen towers' features come from the feature cache, so a head-only trial costs seconds.

Storage: `tune.storage` (any Optuna RDB URL), by default SQLite output_dir/study.db. The study ends when it
holds `tune.trials` finished trials, however many commands (on one machine or several sharing one database)
added them: a killed command, started again, continues the same study; a trial it left running is failed by
the heartbeat and not counted. Output folder: study.db, folds.csv, trials/trial-N/fold-K/ (ordinary runs),
trials.csv (one row per trial), best.yaml (the config with the best trial's values, ready for train or cv),
tune-config.yaml (the config it ran with) and report.html (trial table, optimisation history, parameter
importances; `mmtune report FOLDER` writes it again, e.g. while another machine adds trials).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import socket
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mmtune.config import Config, load_config, parse_space_entry, save_config
from mmtune.durations import budget_seconds
from mmtune.errors import InputError
from mmtune.evaluation.folders import fold_dir
from mmtune.evaluation.metrics import LOWER_IS_BETTER
from mmtune.outputs import write_text_atomic
from mmtune.recipes.tune_page import BEST_FILE, TRIALS_FILE, TUNE_CONFIG_FILE, config_to_write, storage_url, write_page

log = logging.getLogger(__name__)

_HEARTBEAT_S, _GRACE_S = 30, 90
_FINISHED = ("COMPLETE", "PRUNED")


@dataclass
class TuneResult:
    out: Path
    finished: int  # complete + pruned trials in the study
    best_value: float | None
    best_params: dict[str, Any]
    best_config: Path | None
    trials_table: Path


def tune(config_path: Path, overrides: list[str]) -> TuneResult:
    cfg = load_config(config_path, overrides)
    if not cfg.tune.space:
        raise InputError(f"{config_path}: 'tune.space' is empty; name the keys to search, e.g. "
                         "tune.space: {train.head_lr: 'float(1e-4, 1e-2, log)'}")
    if cfg.data.val:
        raise InputError("data.val: tune validates on folds of data.train; unset data.val (data.val=null)")
    for key, spec in cfg.tune.space.items():  # every key and value the space can produce loads, before any trial
        for value in _corners(spec):
            load_config(config_path, [*overrides, f"{key}={value}"])
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    from mmtune.recipes.cv import shared_folds

    folds_path, _ = shared_folds(replace(cfg, output_dir=str(out)), out)
    save_config(config_to_write(cfg), out / TUNE_CONFIG_FILE)  # what `mmtune report` reads to find the study
    study = open_study(cfg, out)
    deadline = budget_seconds(cfg.tune.time_budget)
    started = time.monotonic()
    objective = _Objective(config_path, overrides, cfg, out, folds_path)
    while _finished(study) < cfg.tune.trials:
        if deadline is not None and time.monotonic() - started >= deadline:
            log.info(f"tune.time_budget {cfg.tune.time_budget} spent; run the same command again to continue")
            break
        study.optimize(objective, n_trials=1, catch=())
    return _write_outputs(study, cfg, config_path, overrides, out)


def open_study(cfg: Config, out: Path) -> Any:
    import optuna

    url = storage_url(cfg, out)
    # The heartbeat fails a trial whose process died (a killed command): Optuna marks it experimental.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(
            url, heartbeat_interval=_HEARTBEAT_S, grace_period=_GRACE_S,
            # SQLite: two processes writing at once wait for the lock instead of failing at once.
            engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {})
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2) if cfg.tune.pruning
              else optuna.pruners.NopPruner())
    direction = "minimize" if cfg.train.metric in LOWER_IS_BETTER else "maximize"
    return optuna.create_study(study_name=cfg.tune.study, storage=storage, load_if_exists=True, direction=direction,
                               sampler=optuna.samplers.TPESampler(seed=None), pruner=pruner)


def _finished(study: Any) -> int:
    import optuna

    states = tuple(getattr(optuna.trial.TrialState, name) for name in _FINISHED)
    return len(study.get_trials(deepcopy=False, states=states))


class _Objective:
    def __init__(self, config_path: Path, overrides: list[str], cfg: Config, out: Path, folds_path: Path) -> None:
        self.config_path, self.overrides, self.cfg, self.out, self.folds_path = (
            config_path, overrides, cfg, out, folds_path)

    def __call__(self, trial: Any) -> float:
        import optuna

        from mmtune.recipes.cv import fold_config
        from mmtune.recipes.train import train

        params = suggest(trial, self.cfg.tune.space)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # who ran it (shared studies)
        trial_dir = self.out / "trials" / f"trial-{trial.number}"
        cfg = load_config(self.config_path, [*self.overrides, *(f"{k}={v}" for k, v in params.items()),
                                             # a trial is scored on its validation folds only
                                             f"output_dir={trial_dir}", "cv.refit=false", "data.test=null"])
        epochs, scores = cfg.train.epochs, []
        for fold in range(self.cfg.tune.folds):
            pruned: list[bool] = []

            def report(epoch: int, value: float, fold: int = fold, pruned: list[bool] = pruned) -> bool:
                trial.report(_running_mean(scores, value), fold * epochs + epoch)
                pruned.append(trial.should_prune())
                return pruned[-1]

            run = train(fold_config(cfg, trial_dir, fold, self.folds_path), on_eval=report)
            if run.stopped not in ("finished", "early_stopping"):
                raise InputError(f"{trial_dir}: trial {trial.number} stopped ({run.stopped})")
            if pruned and pruned[-1]:
                raise optuna.TrialPruned()
            scores.append(_best_value(fold_dir(trial_dir, fold), cfg.train.metric))
        return sum(scores) / len(scores)


def _running_mean(done: list[float], current: float) -> float:
    return (sum(done) + current) / (len(done) + 1)


def _best_value(run_dir: Path, metric: str) -> float:
    metrics = json.loads((run_dir / "best" / "metrics.json").read_text(encoding="utf-8"))
    return float(metrics[metric])


def suggest(trial: Any, space: dict[str, str]) -> dict[str, str]:
    """One value per key, as the text of a `key=value` override."""
    params = {}
    for key, spec in space.items():
        kind, args, log_scale = parse_space_entry(spec)
        if kind == "choice":
            params[key] = trial.suggest_categorical(key, args)
        elif kind == "int":
            params[key] = str(trial.suggest_int(key, int(args[0]), int(args[1]), log=log_scale))
        else:
            params[key] = repr(trial.suggest_float(key, float(args[0]), float(args[1]), log=log_scale))
    return params


def _corners(spec: str) -> list[str]:
    kind, args, _ = parse_space_entry(spec)
    return args


def _write_outputs(study: Any, cfg: Config, config_path: Path, overrides: list[str], out: Path) -> TuneResult:
    trials = study.get_trials(deepcopy=False)
    keys = list(cfg.tune.space)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["trial", "state", cfg.train.metric, "seconds", "worker", *keys])
    for t in trials:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else ""
        writer.writerow([t.number, t.state.name, "" if t.value is None else t.value,
                         f"{seconds:.1f}" if seconds != "" else "", t.user_attrs.get("worker", ""),
                         *(t.params.get(k, "") for k in keys)])
    write_text_atomic(out / TRIALS_FILE, buf.getvalue())
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    result = TuneResult(out, _finished(study), None, {}, None, out / TRIALS_FILE)
    if complete:
        best = study.best_trial
        result.best_value, result.best_params = best.value, dict(best.params)
        values = [f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items()]
        best_cfg = load_config(config_path, [*overrides, *values, f"output_dir={out / 'best-run'}"])
        result.best_config = out / BEST_FILE
        save_config(config_to_write(best_cfg), result.best_config)
    write_page(study, cfg, out, result.best_config)
    return result
