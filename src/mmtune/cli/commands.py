"""What each `mmtune` verb does: a recipe called with the parsed arguments, its results printed.

The recipes that load torch and transformers are imported inside the commands, after the light pre-flight
checks: bad input is named in a fraction of a second."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from rich.text import Text

from mmtune.cli.audit_view import render_audit
from mmtune.cli.tables import (
    cv_table,
    demo_run_table,
    ensemble_table,
    folds_table,
    label_distribution_table,
    runs_table,
    scores_table,
    workflow_table,
)
from mmtune.config import Config, load_config
from mmtune.errors import InputError
from mmtune.recipes.config import checked_config
from mmtune.recipes.preflight import check_predict, check_run
from mmtune.terminal import literal, plain_console

console = plain_console()
err_console = plain_console(stderr=True)


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
    cfg = checked_config(args.config, args.overrides)  # as `mmtune config` checks it: the kind before the models
    check_run(cfg)
    from mmtune.recipes.train import train  # torch and transformers: only once the config is known to be sound

    result = train(cfg, resume=args.resume)
    if result.stopped in ("time_budget", "signal"):
        _print_resume_hint(["train", str(args.config), "--resume"], args.overrides, result.stopped, cfg)
        return 0 if result.stopped == "time_budget" else 130
    scores = result.scores
    if scores is not None:
        console.print(scores_table(scores, f"best evaluation: step {scores.step}, {scores.posts} validation posts"))
        console.print(f"files written in {cfg.output_dir}: " + ", ".join(path.name for path in scores.files),
                      highlight=False)
    console.print(f"done ({result.stopped}): {cfg.output_dir}")
    return 0


def _print_resume_hint(command: list[str], overrides: list[str], stopped: str, cfg: Config) -> None:
    """How to continue a stopped run: the same command, and after a time-budget stop how to give it a new budget
    (train.time_budget may change on --resume: mmtune.training.resume.RESUMABLE_CHANGES)."""
    console.print(f"stopped ({stopped}); continue with: mmtune {' '.join([*command, *overrides])}", highlight=False)
    if stopped == "time_budget":
        kept = [item for item in overrides if not item.startswith("train.time_budget=")]
        console.print(f"that gives it {cfg.train.time_budget} again; for another budget: mmtune "
                      f"{' '.join([*command, *kept, 'train.time_budget=2h'])} (any duration: 90m, 2h, 1h30m)",
                      highlight=False)


def cmd_predict(args: argparse.Namespace) -> None:
    check_predict(args.run_dir, args.data, args.out)
    # torch and transformers: only once the paths are known to be sound
    from mmtune.recipes.predict_ensemble import predict_source
    from mmtune.recipes.scores import prediction_scores, run_metric

    predictions = predict_source(args.run_dir, args.data, args.images, args.out, tta_flip=args.tta_flip,
                                 batch_size=args.batch_size)
    scores = prediction_scores(predictions, run_metric(args.run_dir)) if predictions.gold is not None else None
    if scores is not None:
        console.print(scores_table(scores, f"scores on {args.data.name} ({scores.posts} labelled posts)"))
    console.print(f"predictions written to {args.out}")


def cmd_cv(args: argparse.Namespace) -> int:
    cfg = checked_config(args.config, args.overrides)
    check_run(cfg)
    from mmtune.recipes.cv import run_cv

    result = run_cv(cfg)  # a command's time budget counts from the process start
    if not result.complete:
        fold, why = next(iter(result.stopped.items()))
        run = f"fold {fold}" if isinstance(fold, int) else f"the {fold} run"
        console.print(f"{run} stopped ({why}); run the same command again to continue it")
        if why == "time_budget":
            console.print(f"that gives it {cfg.train.time_budget} again; for another budget add "
                          "train.time_budget=2h (any duration: 90m, 2h, 1h30m)", highlight=False)
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
                                          seed=args.seed, force_rules=args.force_rules))
    console.print(ensemble_table(result.summary))
    outputs = result.summary["outputs"]
    oof = f" (OOF: {outputs['oof']})" if result.oof_out else ""
    console.print(f"ensemble written to {outputs['predictions']}{oof}; summary {outputs['summary']}")


def cmd_submit(args: argparse.Namespace) -> None:
    from mmtune.recipes.submit import submit_file, training_labels

    labels = [name.strip() for name in args.labels.split(",")] if args.labels else None
    data = load_config(args.config, args.overrides).data
    training = training_labels(args.predictions, args.source)  # a bad --source is named before anything is written
    sub = submit_file(args.predictions, args.out, phase=args.phase, fmt=args.fmt, ids=args.ids, labels=labels,
                      data=data, force=args.force)
    console.print(label_distribution_table(sub.labels, Counter(sub.predicted), training.counts if training else None))
    if training is not None:
        console.print(literal(f"training labels: {training.what}"))
    console.print(f"{len(sub.ids)} predictions written to {args.out}")


def cmd_report(args: argparse.Namespace) -> None:
    from mmtune.recipes.report import report_folders

    out = report_folders(args.dirs, args.out, gallery_size=args.gallery, gold=args.gold)
    console.print(f"report written to {out}")


def cmd_runs(args: argparse.Namespace) -> None:
    from mmtune.recipes.runs import read_board

    board = read_board(args.dirs, gold=args.gold, sort=args.sort)
    for skipped in board.skipped:  # on stderr: --json and --csv output stays clean for a pipe
        err_console.print(literal(f"skipped {skipped.path}: {skipped.reason}"))
    if board.skipped:
        err_console.print(f"{len(board.skipped)} folder(s) skipped")
    if args.json or args.csv:
        sys.stdout.write(board.json() if args.json else board.csv())
        return
    console.print(runs_table(board))


def cmd_export(args: argparse.Namespace) -> None:
    from mmtune.recipes.export import export

    result = export(args.run_dir, args.out, merge=args.merge)
    console.print(f"exported {len(result.members)} classifier(s) for labels {', '.join(result.labels)} to "
                  f"{result.out} (model card: {result.out / 'README.md'})")


def cmd_serve(args: argparse.Namespace) -> None:
    from mmtune.recipes.serve import serve

    serve(args.model, host=args.host, port=args.port, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
          announce=lambda url: console.print(f"serving {args.model} at {url} (API docs: {url}docs)"))


def cmd_make_tiny(args: argparse.Namespace) -> None:
    from mmtune.recipes.make_tiny import make_tiny_model

    path = make_tiny_model(args.family, args.out, seed=args.seed)
    console.print(f"tiny {args.family} model written to {path}")


def cmd_convert_internvl(args: argparse.Namespace) -> None:
    from mmtune.recipes.convert import convert_internvl

    console.print(f"converted to transformers' InternVL: {convert_internvl(args.src, args.dst)}")


def cmd_describe(args: argparse.Namespace) -> None:
    from mmtune.recipes.describe import check_describe, describe

    cfg = _describe_config(args)
    check_describe(cfg, args.data, args.out, args.config)  # before torch loads
    result = describe(cfg, args.data, args.images, args.out, args.config)
    skipped = f", {result.skipped} bad posts skipped (empty field)" if result.skipped else ""
    console.print(literal(f"{result.posts} of {result.rows} posts described ({result.images} images, "
                          f"{result.generated} generated, {result.images - result.generated} from the cache)"
                          f"{skipped}; '{result.field}' written to {result.out}"))


def _describe_config(args: argparse.Namespace) -> Config:
    """The config with the flags applied (as values, not overrides: a prompt is free text, never YAML)."""
    cfg = _load(args)
    flags = {"prompt": args.prompt, "field": args.field, "batch_size": args.batch_size,
             "max_new_tokens": args.max_new_tokens}
    section = replace(cfg.describe, **{key: value for key, value in flags.items() if value is not None})
    model = replace(cfg.model, name=args.model) if args.model else cfg.model
    return replace(cfg, describe=section, model=model)


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
    from mmtune.recipes.config import resolved_yaml, schema

    if args.schema:
        for key, default, text in schema():  # one line per key, never wrapped: grep finds a key with its doc
            line = Text.assemble((key, "bold"), f" = {default}  ", (text, "dim"))
            console.print(line, highlight=False, soft_wrap=True)
        return
    path, overrides = config_and_overrides(args.config, args.overrides)
    console.print(resolved_yaml(path, overrides), end="", highlight=False, soft_wrap=True)


def config_and_overrides(option: Path | None, items: list[str]) -> tuple[Path | None, list[str]]:
    """`mmtune config [CONFIG] [k=v ...]`: the first item is the config file when it is not an override (it has
    no '=', or it names an existing file); `--config` names it as well, but not both."""
    if not items or ("=" in items[0] and not _is_file(items[0])):
        return option, items
    if option is not None:
        raise InputError(f"config given twice: '{items[0]}' and --config {option}; give one")
    return Path(items[0]), items[1:]


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except OSError:  # an override longer than a file name can be (ENAMETOOLONG) is no file
        return False


def generative_command(verb: str) -> Callable[[argparse.Namespace], int]:
    """`mmtune sft|dpo|build-vlm CONFIG [k=v ...] [--resume]`."""
    def run(args: argparse.Namespace) -> int:
        cfg = load_config(args.config, args.overrides)
        check_run(cfg)
        from mmtune.recipes.generative import train_generative

        stopped = train_generative(verb, cfg, resume=args.resume)
        if stopped in ("time_budget", "signal"):
            _print_resume_hint([verb, str(args.config), "--resume"], args.overrides, stopped, cfg)
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
