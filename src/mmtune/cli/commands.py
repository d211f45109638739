"""What each `mmtune` verb does: a recipe called with the parsed arguments, its results printed.

The recipes that load torch and transformers are imported inside the commands, after the light pre-flight
checks: bad input is named in a fraction of a second."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from rich.text import Text

from mmtune.cli.audit_view import render_audit
from mmtune.cli.tables import cv_table, demo_run_table, ensemble_table, folds_table, workflow_table
from mmtune.config import Config, describe_schema, load_config, to_dict
from mmtune.recipes.preflight import check_predict, check_run
from mmtune.terminal import literal, plain_console

console = plain_console()


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)


def cmd_inspect(args: argparse.Namespace) -> None:
    from mmtune.recipes.audit import AuditFiles, check_inspect, inspect

    cfg = _load(args)
    files = AuditFiles(args.data, args.images, args.test, args.test_images)
    check_inspect(files, args.json, args.config)
    with _counting_progress("inspecting posts") as tick:
        report = inspect(files, cfg.data, json_out=args.json, progress=tick)
    render_audit(report, console)
    if args.json:
        console.print(f"audit written to {args.json}")


def cmd_folds(args: argparse.Namespace) -> None:
    from mmtune.recipes.folds import folds

    result = folds(_load(args), args.data, args.images, args.out, k=args.folds, seed=args.seed,
                   config_file=args.config)
    console.print(folds_table(result.folds, result.labels, result.k))
    console.print(f"{len(result.folds)} posts in {result.k} folds written to {args.out}")


def cmd_train(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    check_run(cfg)
    from mmtune.recipes.train import train  # torch and transformers: only once the config is known to be sound

    stopped = train(cfg, resume=args.resume).stopped
    if stopped in ("time_budget", "signal"):
        console.print(f"stopped ({stopped}); continue with: mmtune train {args.config} --resume "
                      f"{' '.join(args.overrides)}".rstrip())
        return 0 if stopped == "time_budget" else 130
    console.print(f"done ({stopped}): {cfg.output_dir}")
    return 0


def cmd_predict(args: argparse.Namespace) -> None:
    check_predict(args.run_dir, args.data, args.out)
    from mmtune.recipes.predict import predict  # torch and transformers: only once the paths are known to be sound

    predict(args.run_dir, args.data, args.images, args.out, tta_flip=args.tta_flip)
    console.print(f"predictions written to {args.out}")


def cmd_cv(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    check_run(cfg)
    from mmtune.recipes.cv import run_cv

    result = run_cv(cfg)  # a command's time budget counts from the process start
    if not result.complete:
        fold, why = next(iter(result.stopped.items()))
        run = f"fold {fold}" if isinstance(fold, int) else f"the {fold} run"
        console.print(f"{run} stopped ({why}); run the same command again to continue it")
        return 0 if why == "time_budget" else 130
    console.print(cv_table(result.summary))
    console.print(f"cv done: {result.oof}" + (f", {result.test}" if result.test else "")
                  + f", {result.cv_dir / 'cv_summary.json'} (trained {result.trained}, skipped {result.skipped})")
    if result.refit_epochs is not None:
        console.print(f"refit on every training post for {result.refit_epochs} epochs: {result.cv_dir / 'refit'}"
                      + (f"; with the fold models: {result.refit_test}" if result.refit_test else ""))
    return 0


def cmd_tune(args: argparse.Namespace) -> None:
    check_run(_load(args))
    from mmtune.recipes.tune import tune

    result = tune(args.config, args.overrides)
    if result.best_config is None:
        console.print(f"no complete trial yet ({result.finished} finished); trials: {result.trials_table}")
        return
    params = ", ".join(f"{k}={v}" for k, v in result.best_params.items())
    console.print(f"{result.finished} trials finished; best {result.best_value:.4f} with {params}")
    console.print(f"best config: {result.best_config}; trials: {result.trials_table}")


def cmd_ensemble(args: argparse.Namespace) -> None:
    from mmtune.recipes.ensemble import EnsembleRequest, run_ensemble

    result = run_ensemble(EnsembleRequest(inputs=args.inputs, out=args.out, method=args.method, tests=args.test,
                                          label_map=args.label_map, rules=args.rules, calibrate=args.calibrate,
                                          seed=args.seed))
    console.print(ensemble_table(result.summary))
    outputs = result.summary["outputs"]
    oof = f" (OOF: {outputs['oof']})" if result.oof_out else ""
    console.print(f"ensemble written to {outputs['predictions']}{oof}; summary {outputs['summary']}")


def cmd_submit(args: argparse.Namespace) -> None:
    from mmtune.recipes.submit import submit_file

    labels = [name.strip() for name in args.labels.split(",")] if args.labels else None
    data = load_config(args.config, args.overrides).data
    sub = submit_file(args.predictions, args.out, phase=args.phase, fmt=args.fmt, ids=args.ids, labels=labels,
                      data=data)
    console.print(f"{len(sub.ids)} predictions written to {args.out}")


def cmd_report(args: argparse.Namespace) -> None:
    from mmtune.recipes.report import report

    out = report(args.run_dir, args.out, gallery_size=args.gallery)
    console.print(f"report written to {out}")


def cmd_make_tiny(args: argparse.Namespace) -> None:
    from mmtune.recipes.make_tiny import make_tiny_model

    path = make_tiny_model(args.family, args.out, seed=args.seed)
    console.print(f"tiny {args.family} model written to {path}")


def cmd_convert_internvl(args: argparse.Namespace) -> None:
    from mmtune.recipes.convert import convert_internvl

    console.print(f"converted to transformers' InternVL: {convert_internvl(args.src, args.dst)}")


def cmd_demo(args: argparse.Namespace) -> None:
    """Demo data -> inspect -> folds -> train the demo config offline -> held-out macro-F1 -> the cv workflow."""
    from mmtune.recipes import demo

    demo.check_paths(args.out, args.run_dir)
    started = time.perf_counter()
    with console.status(literal(f"generating {args.n_train} + {args.n_test} demo posts in {args.out}")):
        data = demo.make_data(args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    console.print(f"demo data: {data.train} ({args.n_train} posts), {data.test} ({args.n_test} posts)")
    cfg = demo.demo_config(args.run_dir, data, args.overrides)
    with _counting_progress("inspecting demo posts") as tick:
        report = demo.audit(cfg, data, progress=tick)
    render_audit(report, console)
    run = demo.train_run(cfg, data)
    console.print(demo_run_table(run.labels, run.validation, run.held_out))
    console.print(f"training stopped: {run.stopped}")
    cv_dir = args.run_dir.parent / "cv"
    with console.status(literal(f"demo: {demo.DEMO_FOLDS}-fold cv in {cv_dir}")):  # why: a str status is markup
        figures = demo.cv_workflow(cfg, data.test_gold, cv_dir)
    console.print(cv_table(figures["cv_summary"]))
    console.print(workflow_table(figures))
    console.print(f"cv: {cv_dir} (oof.csv, test.csv, ensemble.csv); report: {figures['report']}; "
                  f"submission: {figures['submission']}")
    console.print(f"demo done in {time.perf_counter() - started:.0f} s. Data and audit: {args.out}; "
                  f"run: {args.run_dir} (metrics.jsonl, best/, val_predictions.csv, test_predictions.csv, "
                  "learning_curve.png); cv, ensemble and report: " + str(cv_dir))


def cmd_config(args: argparse.Namespace) -> None:
    if args.schema:
        for key, default, text in describe_schema():
            console.print(Text.assemble((key, "bold"), f" = {default}  ", (text, "dim")), highlight=False)
        return
    cfg = _load(args)
    console.print(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), highlight=False)


def generative_command(verb: str) -> Callable[[argparse.Namespace], int]:
    """`mmtune sft|dpo|build-vlm CONFIG [k=v ...] [--resume]`."""
    def run(args: argparse.Namespace) -> int:
        cfg = load_config(args.config, args.overrides)
        check_run(cfg)
        from mmtune.recipes.generative import train_generative

        stopped = train_generative(verb, cfg, resume=args.resume)
        if stopped in ("time_budget", "signal"):
            hint = f"mmtune {verb} {args.config} --resume {' '.join(args.overrides)}".rstrip()
            console.print(f"stopped ({stopped}); continue with: {hint}")
            return 0 if stopped == "time_budget" else 130
        console.print(f"done: {Path(cfg.output_dir) / 'model'}")
        return 0

    return run


class _counting_progress:
    """A rich progress line that counts posts; the callable it yields is called once per post."""

    def __init__(self, description: str) -> None:
        from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._progress = Progress(SpinnerColumn(), TextColumn(description), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=console, transient=True)
        self._task = self._progress.add_task(description, total=None)

    def __enter__(self) -> Callable[[], None]:
        self._progress.start()
        return lambda: self._progress.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
