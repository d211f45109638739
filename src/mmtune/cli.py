"""The `mmtune` command line. Exit codes: 0 success, 2 bad input or config (one line), 1 internal error."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from importlib.resources import as_file
from pathlib import Path

import numpy as np
import yaml
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from mmtune import __version__
from mmtune.cli_args import bounded_int, seed
from mmtune.cli_workflow import add_commands as add_workflow_commands
from mmtune.config import Config, describe_schema, load_config, load_saved_config, to_dict
from mmtune.errors import InputError
from mmtune.generative.cli import add_commands as generative_commands
from mmtune.models.sources import check_config_models
from mmtune.outputs import check_outputs, check_run, write_text_atomic
from mmtune.terminal import literal, plain_console, printable, printable_record
from mmtune.training.budget import quick_exit

log = logging.getLogger("mmtune")
console = plain_console()


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML config (for data.format, data.columns, data.text, ...)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors are bad input too: one line and exit code 2, like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"mmtune: error: {message} (see {self.prog} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="mmtune", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mmtune {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    inspect = commands.add_parser("inspect", help="audit a data file: labels, duplicates, faults, images, leakage")
    inspect.add_argument("data", type=Path, help="ViMMSD JSON, JSONL or CSV file")
    inspect.add_argument("--images", type=Path, help="folder the image names are relative to")
    inspect.add_argument("--test", type=Path, help="a test file to compare with (shift, leakage)")
    inspect.add_argument("--test-images", type=Path, help="image folder of the test file")
    inspect.add_argument("--json", type=Path, help="write the full audit here")
    _config_args(inspect)
    inspect.set_defaults(run=cmd_inspect)

    folds = commands.add_parser("folds", help="write folds.csv: stratified, grouped by caption and image")
    folds.add_argument("data", type=Path)
    folds.add_argument("--images", type=Path)
    folds.add_argument("--out", type=Path, required=True, help="folds.csv to write")
    folds.add_argument("-k", "--folds", type=bounded_int(2), help="number of folds (default: cv.folds)")
    folds.add_argument("--seed", type=seed, help="seed (default: seed)")
    _config_args(folds)
    folds.set_defaults(run=cmd_folds)

    train = commands.add_parser("train", help="train one run: writes output_dir/{best,last,metrics.jsonl,...}")
    train.add_argument("config", type=Path, help="YAML config")
    train.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    train.add_argument("--resume", action="store_true", help="continue the run in output_dir from last/")
    train.set_defaults(run=cmd_train)

    predict = commands.add_parser("predict", help="predict a data file with a run's best weights -> CSV")
    predict.add_argument("run_dir", type=Path)
    predict.add_argument("data", type=Path)
    predict.add_argument("--images", type=Path)
    predict.add_argument("--out", type=Path, required=True)
    predict.add_argument("--tta-flip", action="store_true", help="average with horizontally flipped images")
    predict.set_defaults(run=cmd_predict)

    tiny = commands.add_parser("make-tiny", help="write a tiny random model of a family, for smoke tests")
    tiny.add_argument("family")
    tiny.add_argument("out", type=Path)
    tiny.add_argument("--seed", type=seed, default=0)
    tiny.set_defaults(run=cmd_make_tiny)

    convert = commands.add_parser("convert", help="convert a checkpoint to transformers' native format")
    formats = convert.add_subparsers(dest="format", required=True)
    internvl = formats.add_parser("internvl", help="InternVL2/2.5/Vintern chat (internvl_chat) -> InternVL")
    internvl.add_argument("src", type=Path, help="folder of the original checkpoint")
    internvl.add_argument("dst", type=Path, help="new or empty folder for the native one")
    internvl.set_defaults(run=cmd_convert_internvl)

    demo = commands.add_parser("demo", help="generate the synthetic demo data and run the pipeline on it")
    demo.add_argument("--out", type=Path, default=Path("demo-data"), help="folder for the demo data")
    demo.add_argument("--n-train", type=bounded_int(40), default=2000, help="training posts (at least 40)")
    demo.add_argument("--n-test", type=bounded_int(1), default=400)
    demo.add_argument("--seed", type=seed, default=0)
    demo.add_argument("--run-dir", type=Path, default=Path("demo-runs/fusion"), help="where the demo run goes")
    demo.add_argument("overrides", nargs="*", metavar="section.key=value", help="overrides of the demo config")
    demo.set_defaults(run=cmd_demo)

    add_workflow_commands(commands)

    config = commands.add_parser("config", help="print the resolved config, or every key with its doc")
    _config_args(config)
    config.add_argument("--schema", action="store_true", help="list every key, its default and doc")
    config.set_defaults(run=cmd_config)
    generative_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    # Overrides may come before or after options; argparse alone only takes them in one place.
    args, extra = parser.parse_known_args(argv)
    unknown = [item for item in extra if item.startswith("-") or "=" not in item]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    handler = RichHandler(console=plain_console(stderr=True), show_path=False, show_time=False)
    handler.addFilter(printable_record)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s",
                        handlers=[handler], force=True)
    # bitsandbytes warns at import, on AVX512-BF16 CPUs, that it cannot fetch a CPU inference kernel from the Hub;
    # mmtune keeps 4-bit layers off that path (compat.keep_bnb_4bit_training_layout), so the line is only noise.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    quick_exit()
    try:
        code = args.run(args)
        _release_process_group()
    except InputError as exc:
        _report_error(printable(exc))  # why: messages quote ids and names from data
        return 2
    except KeyboardInterrupt:
        print("mmtune: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


# ----------------------------------------------------------------------------------------------
# Commands


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)


def cmd_inspect(args: argparse.Namespace) -> None:
    from mmtune.data.audit import InspectRequest, inspect_data
    from mmtune.data.audit_view import render_audit

    cfg = _load(args)
    check_outputs({"--json": args.json}, {"data": args.data, "--test": args.test, "--config": args.config})
    request = InspectRequest(args.data, args.images, args.test, args.test_images)
    started = time.perf_counter()
    with _counting_progress("inspecting posts") as tick:
        report = inspect_data(request, cfg.data, progress=tick)
    report["seconds"] = round(time.perf_counter() - started, 2)
    render_audit(report, console)
    if args.json:
        _write_json(report, args.json)
        console.print(f"audit written to {args.json}")


def cmd_folds(args: argparse.Namespace) -> None:
    from mmtune.data.checks import load_posts
    from mmtune.data.folds import make_folds, write_folds

    cfg = _load(args)
    k = args.folds if args.folds is not None else cfg.cv.folds
    seed = args.seed if args.seed is not None else cfg.seed
    check_outputs({"--out": args.out}, {"data": args.data, "--config": args.config})
    posts = load_posts(args.data, args.images, cfg.data, labels=cfg.data.labels, require_label=True).require_posts()
    folds = make_folds(posts, k=k, seed=seed, group_by=cfg.cv.group_by)
    write_folds(folds, args.out)
    console.print(_folds_table(folds, {p.id: p.label for p in posts}, k))
    console.print(f"{len(folds)} posts in {k} folds written to {args.out}")


def _folds_table(folds: dict[str, int], labels: dict[str, str | None], k: int) -> Table:
    counts = Counter((fold, labels[pid]) for pid, fold in folds.items())
    names = sorted({str(label) for label in labels.values()})
    table = Table(title="posts per fold and label", title_justify="left")
    table.add_column("fold")
    for name in names:
        table.add_column(literal(name), justify="right")
    for fold in range(k):
        table.add_row(str(fold), *(str(counts[(fold, name)]) for name in names))
    return table


def cmd_demo(args: argparse.Namespace) -> None:
    """Demo data -> inspect -> folds -> train the demo config offline -> held-out macro-F1."""
    from mmtune.data.audit import InspectRequest, inspect_data
    from mmtune.data.audit_view import render_audit
    from mmtune.demo import make_demo_data
    from mmtune.ensemble.demo import run_demo_workflow

    _check_demo_paths(args.out, args.run_dir)
    started = time.perf_counter()
    with console.status(literal(f"generating {args.n_train} + {args.n_test} demo posts in {args.out}")):
        demo = make_demo_data(args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    console.print(f"demo data: {demo.train} ({args.n_train} posts), {demo.test} ({args.n_test} posts)")
    cfg = _demo_config(args, demo)
    request = InspectRequest(demo.train, demo.train_images, demo.test, demo.test_images)
    with _counting_progress("inspecting demo posts") as tick:
        report = inspect_data(request, cfg.data, progress=tick)
    render_audit(report, console)
    _write_json(report, args.out / "inspect.json")
    _demo_train(cfg, demo, args.run_dir)
    run_demo_workflow(cfg, demo.test_gold, args.run_dir.parent / "cv", console)
    console.print(f"demo done in {time.perf_counter() - started:.0f} s. Data and audit: {args.out}; "
                  f"run: {args.run_dir} (metrics.jsonl, best/, val_predictions.csv, test_predictions.csv, "
                  "learning_curve.png); cv, ensemble and report: " + str(args.run_dir.parent / "cv"))


def _check_demo_paths(out: Path, run_dir: Path) -> None:
    """The demo starts its run over (it deletes --run-dir): that folder must be a run folder or absent,
    and must hold neither the demo data nor the current folder."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file; the demo data needs a folder")
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"--run-dir {run_dir}: is a file, not a folder")
    resolved = run_dir.resolve()
    for name, inside in (("--out", out), ("the current folder", Path.cwd())):
        if resolved == inside.resolve() or resolved in inside.resolve().parents:
            raise InputError(f"--run-dir {run_dir}: holds {name}; the demo deletes --run-dir before training")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not (run_dir / "config.yaml").is_file():
        raise InputError(f"--run-dir {run_dir}: is a folder but not a mmtune run (no config.yaml); the demo "
                         "deletes --run-dir before training, give a new folder")


def _demo_config(args: argparse.Namespace, demo: object) -> Config:
    from importlib.resources import files

    overrides = [
        f"output_dir={args.run_dir}", f"data.train={demo.train}", f"data.train_images={demo.train_images}",
        f"data.test={demo.test}", f"data.test_images={demo.test_images}", *args.overrides,
    ]
    with as_file(files("mmtune") / "resources" / "demo.yaml") as path:
        return load_config(path, overrides)


def _demo_train(cfg: Config, demo: object, run_dir: Path) -> None:
    import shutil

    from mmtune.evaluation.metrics import evaluate_probs
    from mmtune.evaluation.predictions import read_gold_labels, read_predictions
    from mmtune.training.run import train

    shutil.rmtree(run_dir, ignore_errors=True)  # the demo always starts over; the feature cache stays
    stopped = train(cfg)
    best = json.loads((run_dir / "best" / "metrics.json").read_text(encoding="utf-8"))
    pred = read_predictions(run_dir / "test_predictions.csv")
    ids, probs, labels = pred.ids, pred.probs, pred.labels
    gold = read_gold_labels(demo.test_gold)
    targets = [labels.index(gold[i]) for i in ids]
    held_out = evaluate_probs(probs, np.array(targets), labels)
    table = Table(title="demo results", title_justify="left")
    for name in ("", "validation fold", "held-out test"):
        table.add_column(name, justify="right" if name else "left")
    rows = [("macro-F1", "macro_f1"), ("accuracy", "accuracy")]
    for title, key in rows:
        table.add_row(title, f"{best[key]:.3f}", f"{held_out[key]:.3f}")
    for label in labels:
        table.add_row(literal(f"F1 {label}"), f"{best['per_class'][label]['f1']:.3f}",
                      f"{held_out['per_class'][label]['f1']:.3f}")
    console.print(table)
    console.print(f"training stopped: {stopped}")


def cmd_train(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    check_run(cfg)
    from mmtune.training.run import train  # torch and transformers: only once the config is known to be sound

    stopped = train(cfg, resume=args.resume)
    if stopped in ("time_budget", "signal"):
        console.print(f"stopped ({stopped}); continue with: mmtune train {args.config} --resume "
                      f"{' '.join(args.overrides)}".rstrip())
        return 0 if stopped == "time_budget" else 130
    console.print(f"done ({stopped}): {cfg.output_dir}")
    return 0


def cmd_predict(args: argparse.Namespace) -> None:
    run_files = {f"run file {path.relative_to(args.run_dir)}": path
                 for path in [args.run_dir / "config.yaml", *sorted(args.run_dir.glob("best/*"))]}
    check_outputs({"--out": args.out}, {"data": args.data, **run_files})
    if not args.data.is_file():
        raise InputError(f"{args.data}: data file not found" if not args.data.exists() else f"{args.data}: not a file")
    if (args.run_dir / "config.yaml").is_file():  # the models the run was trained from are still there
        check_config_models(load_saved_config(args.run_dir / "config.yaml"))
    from mmtune.training.run import predict  # torch and transformers: only once the paths are known to be sound

    out = predict(args.run_dir, args.data, args.images, args.out, tta_flip=args.tta_flip)
    console.print(f"predictions written to {out}")


def cmd_make_tiny(args: argparse.Namespace) -> None:
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; make-tiny writes a model folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise InputError(f"{out}: is a folder with other files (no config.json); give a new or empty folder")
    from mmtune.testing.tiny import make_tiny

    path = make_tiny(args.family, args.out, seed=args.seed)
    console.print(f"tiny {args.family} model written to {path}")


def cmd_convert_internvl(args: argparse.Namespace) -> None:
    from mmtune.models.internvl_chat.convert import convert

    console.print(f"converted to transformers' InternVL: {convert(args.src, args.dst)}")


def cmd_config(args: argparse.Namespace) -> None:
    if args.schema:
        for key, default, text in describe_schema():
            console.print(Text.assemble((key, "bold"), f" = {default}  ", (text, "dim")), highlight=False)
        return
    cfg = _load(args)
    console.print(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), highlight=False)


# ----------------------------------------------------------------------------------------------
# Helpers


def _report_error(message: str) -> None:
    """The error as the last line of stderr, on a line of its own: progress bars still drawn are closed
    first (a bar leaves its cursor mid-line), and what was buffered on stdout goes out before it."""
    tqdm_module = sys.modules.get("tqdm")  # only where something used tqdm (transformers, the training loop)
    if tqdm_module is not None:
        for bar in list(getattr(tqdm_module.tqdm, "_instances", ())):
            bar.leave = False
            bar.close()
    sys.stdout.flush()
    sys.stderr.flush()
    print(f"mmtune: error: {message}", file=sys.stderr, flush=True)


def _release_process_group() -> None:
    """Under torchrun / accelerate launch: every rank leaves the process group together at the end."""
    distributed = sys.modules.get("torch.distributed")  # never import torch for commands that did not
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.barrier()
        distributed.destroy_process_group()


def _write_json(report: dict, path: Path) -> None:
    write_text_atomic(path, json.dumps(report, ensure_ascii=False, indent=1))


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
