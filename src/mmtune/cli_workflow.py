"""CLI subcommands of the competition workflow: cv, ensemble (with --calibrate), submit, report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from mmtune.cli_args import bounded_int, seed
from mmtune.ensemble.methods import known_methods
from mmtune.errors import InputError
from mmtune.terminal import literal, plain_console

console = plain_console()


def add_commands(commands: argparse._SubParsersAction) -> None:
    cv = commands.add_parser("cv", help="k-fold CV: output_dir/fold-K/ runs, oof.csv, test.csv, cv_summary.json")
    cv.add_argument("config", type=Path, help="YAML config (cv.folds, cv.only, cv.folds_file)")
    cv.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    cv.set_defaults(run=cmd_cv)

    methods = known_methods()
    ensemble = commands.add_parser("ensemble", help=f"blend prediction files fitted on OOF: {', '.join(methods)}; "
                                                    "optional macro-F1 calibration")
    ensemble.add_argument("inputs", type=Path, nargs="+", help="OOF files (with gold, fold) or cv folders")
    ensemble.add_argument("--out", type=Path, required=True, help="ensemble predictions CSV (+ .oof.csv, .json)")
    ensemble.add_argument("--method", default="mean", help=" | ".join(methods))
    ensemble.add_argument("--test", type=Path, nargs="+", help="test prediction files, one per input, in order")
    ensemble.add_argument("--rules", type=Path, help="YAML priority rules (for --method rules)")
    ensemble.add_argument("--label-map", type=Path, help="YAML 'source_label: [target labels]' for other label sets")
    ensemble.add_argument("--calibrate", nargs="?", const="auto", choices=["auto", "always"],
                          help="temperature + per-class biases fitted on OOF for macro-F1, applied to test; "
                               "auto (default) keeps the biases only when their nested-CV gain is positive")
    ensemble.add_argument("--seed", type=seed, default=0)
    ensemble.set_defaults(run=cmd_ensemble)

    submit = commands.add_parser("submit", help="prediction CSV -> ViMMSD results.zip (or --format csv)")
    submit.add_argument("predictions", type=Path)
    submit.add_argument("--out", type=Path, required=True, help="results.zip (or a .csv with --format csv)")
    submit.add_argument("--phase", choices=["dev", "test"], default="test")
    submit.add_argument("--format", dest="fmt", choices=["vimmsd", "csv"], default="vimmsd")
    submit.add_argument("--ids", type=Path, help="the test data file: every post in it must be predicted")
    submit.add_argument("--labels", help="comma-separated known labels (default: the ViMMSD four for vimmsd)")
    submit.add_argument("--config", type=Path, help="YAML config whose data.format / data.columns read --ids")
    submit.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    submit.set_defaults(run=cmd_submit)

    report = commands.add_parser("report", help="one self-contained HTML page of a run or cv folder")
    report.add_argument("run_dir", type=Path, help="a run folder (mmtune train) or a cv folder (mmtune cv)")
    report.add_argument("--out", type=Path, help="HTML file (default: RUN_DIR/report.html)")
    report.add_argument("--gallery", type=bounded_int(0), default=120,
                        help="most misclassified posts shown (0 = no gallery)")
    report.set_defaults(run=cmd_report)


def cmd_cv(args: argparse.Namespace) -> int:
    from mmtune.config import load_config
    from mmtune.outputs import check_run

    cfg = load_config(args.config, args.overrides)
    check_run(cfg)
    from mmtune.ensemble.cv import run_cv  # torch and transformers: only once the config is known to be sound

    result = run_cv(cfg)  # not api.cv: a command's time budget counts from the process start
    if not result.complete:
        fold, why = next(iter(result.stopped.items()))
        console.print(f"fold {fold} stopped ({why}); run the same command again to continue it")
        return 0 if why == "time_budget" else 130
    console.print(cv_table(result.summary))
    console.print(f"cv done: {result.oof}" + (f", {result.test}" if result.test else "")
                  + f", {result.cv_dir / 'cv_summary.json'} (trained {result.trained}, skipped {result.skipped})")
    return 0


def cv_table(summary: dict[str, Any]) -> Table:
    folds = [str(k) for k in summary["folds"]]
    table = Table(title=f"cv: macro-F1 {summary['macro_f1']['mean']:.3f} ± {summary['macro_f1']['std']:.3f} "
                        f"over {len(folds)} folds; OOF macro-F1 {summary['oof']['macro_f1']:.3f}",
                  title_justify="left")
    table.add_column("")
    for fold in folds:
        table.add_column(f"fold {fold}", justify="right")
    table.add_column("mean ± std", justify="right")
    macro = summary["macro_f1"]
    table.add_row("macro-F1", *(f"{macro['folds'][f]:.3f}" for f in folds), f"{macro['mean']:.3f} ± {macro['std']:.3f}")
    for label, row in summary["per_class_f1"].items():
        table.add_row(literal(f"F1 {label}"), *(f"{v:.3f}" for v in row["folds"]),
                      f"{row['mean']:.3f} ± {row['std']:.3f}")
    return table


def cmd_ensemble(args: argparse.Namespace) -> None:
    from mmtune import api

    result = api.ensemble(args.inputs, out=args.out, method=args.method, tests=args.test, rules=args.rules,
                          label_map=args.label_map, calibrate=args.calibrate, seed=args.seed)
    console.print(ensemble_table(result.summary))
    outputs = result.summary["outputs"]
    oof = f" (OOF: {outputs['oof']})" if result.oof_out else ""
    console.print(f"ensemble written to {outputs['predictions']}{oof}; summary {outputs['summary']}")


def ensemble_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"ensemble ({summary['method']}) on {summary['n_oof']} OOF posts", title_justify="left")
    for name in ("input", "weight", "OOF macro-F1"):
        table.add_column(name, justify="left" if name == "input" else "right")
    weights = summary.get("weights") or [None] * len(summary["inputs"])
    scores = summary.get("members_oof_macro_f1") or [None] * len(summary["inputs"])
    for path, weight, score in zip(summary["inputs"], weights, scores):
        table.add_row(literal(path), "" if weight is None else f"{weight:.3f}", "" if score is None else f"{score:.3f}")
    if "ensemble_oof_macro_f1" in summary:
        note = " (in-sample: fitted on these rows)" if summary.get("ensemble_oof_is_in_sample") else ""
        table.add_row(f"ensemble{note}", "", f"{summary['ensemble_oof_macro_f1']:.3f}")
    for rule in summary.get("rules", []):
        table.add_row(literal(f"rule: {rule['rule']} (fires {rule['fires']}, right {rule['correct']})"), "",
                      f"{rule['macro_f1_before']:.3f} -> {rule['macro_f1_after']:.3f}")
    calibration = summary.get("calibration")
    if calibration:
        nested = calibration["nested_cv"]
        biases = "with biases" if calibration["biases_applied"] else "temperature only (biases did not help)"
        table.add_row(f"calibrated (T={calibration['temperature']:.2f}, {biases}), in-sample", "",
                      f"{calibration['oof_macro_f1_before']:.3f} -> {calibration['oof_macro_f1_after']:.3f}")
        table.add_row("gain of the biases, nested CV", "", f"{nested['gain']:+.3f}")
    return table


def cmd_submit(args: argparse.Namespace) -> None:
    from mmtune.evaluation.submission import SubmitRequest, submit

    labels = [name.strip() for name in args.labels.split(",")] if args.labels else None
    from mmtune.config import load_config

    data = load_config(args.config, args.overrides).data
    sub = submit(SubmitRequest(args.predictions, args.out, phase=args.phase, fmt=args.fmt, ids_from=args.ids,
                               labels=labels, data=data))
    console.print(f"{len(sub.ids)} predictions written to {args.out}")


def report_inputs(run_dir: Path) -> dict[str, Path]:
    """The files `report` reads: the run's (or every fold's) records, and the data files its config names."""
    from mmtune.config import load_config
    from mmtune.outputs import config_inputs

    folders = [run_dir, *sorted(run_dir.glob("fold-*"))]
    files = [path for folder in folders for path in sorted(folder.glob("*"))
             if path.suffix in {".yaml", ".json", ".jsonl", ".csv"} and path.is_file()]
    named: dict[str, Path] = {f"run file {path.relative_to(run_dir)}": path for path in files}
    for config_path in (p for p in files if p.name == "config.yaml"):
        try:
            data_files = config_inputs(load_config(config_path))
        except InputError:
            continue  # the report itself names a damaged config
        named |= {f"{key} of {config_path}": path for key, path in data_files.items() if path is not None}
    return named


def cmd_report(args: argparse.Namespace) -> None:
    from mmtune.evaluation.report import write_report
    from mmtune.outputs import check_outputs

    check_outputs({"--out": args.out}, report_inputs(args.run_dir))
    out = write_report(args.run_dir, args.out, gallery_size=args.gallery)
    console.print(f"report written to {out}")
