"""The `mmtune` command line: its verbs, their arguments and help (each verb runs a command of
mmtune.cli.commands)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmtune import __version__
from mmtune.cli.commands import (
    cmd_config,
    cmd_convert_internvl,
    cmd_cv,
    cmd_demo,
    cmd_describe,
    cmd_ensemble,
    cmd_export,
    cmd_folds,
    cmd_inspect,
    cmd_make_tiny,
    cmd_predict,
    cmd_report,
    cmd_runs,
    cmd_serve,
    cmd_submit,
    cmd_train,
    cmd_tune,
    generative_command,
)
from mmtune.cli_args import bounded_int, seed
from mmtune.recipes.ensemble import known_methods

DESCRIPTION = "The `mmtune` command line. Exit codes: 0 success, 2 bad input or config (one line), 1 internal error."

GENERATIVE_COMMANDS: dict[str, str] = {
    "sft": "supervised fine-tuning of a VLM on chat data (TRL SFTTrainer; only answers are trained)",
    "dpo": "preference tuning of a VLM on (images, prompt, chosen, rejected) rows (TRL DPOTrainer)",
    "build-vlm": "build a LLaVA-style VLM from a vision encoder and an LLM (build.stage 0, 1 or 2)",
}


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML config (for data.format, data.columns, data.text, ...)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors are bad input too: one line and exit code 2, like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"mmtune: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="mmtune", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"mmtune {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and the third-party warnings hidden by default")
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

    predict = commands.add_parser("predict", help="predict a data file with a run, a cv folder (the mean of its "
                                                  "folds) or a saved ensemble (its .json) -> CSV")
    predict.add_argument("run_dir", type=Path, metavar="SOURCE",
                         help="a run folder (its best weights), a cv folder (the mean of its fold models, as its "
                              "test.csv) or the .json that mmtune ensemble wrote (its inputs re-run, then its blend)")
    predict.add_argument("data", type=Path, help="the data file to predict (ViMMSD JSON, JSONL or CSV); "
                         "when every post has a label and SOURCE is a run, its scores are printed")
    predict.add_argument("--images", type=Path, help="folder the data file's image names are relative to")
    predict.add_argument("--out", type=Path, required=True, help="prediction CSV to write (id,label,p_<label>...)")
    predict.add_argument("--tta-flip", action="store_true", help="average with horizontally flipped images")
    predict.add_argument("--batch-size", type=bounded_int(1), metavar="N",
                         help="posts per forward pass (default: twice the run's train.batch_size)")
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

    describe = commands.add_parser("describe", help="a VLM reads each image (its text, or a caption) into a new field "
                                                    "of each post, for data.columns.extra_text")
    describe.add_argument("data", type=Path, help="ViMMSD JSON, JSONL or CSV file")
    describe.add_argument("--images", type=Path, help="folder the image names are relative to")
    describe.add_argument("--model", help="the VLM: a Hub id or folder any vlm-generative run loads (model.name)")
    describe.add_argument("--out", type=Path, required=True, help="the data file with the new field, in DATA's format")
    describe.add_argument("--prompt", help="ocr | caption | ocr_vi | caption_vi | your own text (describe.prompt)")
    describe.add_argument("--field", help="the new field (default: ocr_text for ocr, image_caption for caption)")
    describe.add_argument("--batch-size", type=bounded_int(1), metavar="N", help="images per generate call")
    describe.add_argument("--max-new-tokens", type=bounded_int(1), metavar="N", help="longest answer, in tokens")
    _config_args(describe)
    describe.set_defaults(run=cmd_describe)

    demo = commands.add_parser("demo", help="generate the synthetic demo data and run the pipeline on it")
    demo.add_argument("--out", type=Path, default=Path("demo-data"), help="folder for the demo data")
    demo.add_argument("--n-train", type=bounded_int(40), default=2000, help="training posts (at least 40)")
    demo.add_argument("--n-test", type=bounded_int(1), default=400)
    demo.add_argument("--seed", type=seed, default=0)
    demo.add_argument("--run-dir", type=Path, default=Path("demo-runs/fusion"), help="where the demo run goes")
    demo.add_argument("overrides", nargs="*", metavar="section.key=value", help="overrides of the demo config")
    demo.set_defaults(run=cmd_demo)

    cv = commands.add_parser("cv", help="k-fold CV: output_dir/fold-K/ runs, oof.csv, test.csv, cv_summary.json")
    cv.add_argument("config", type=Path, help="YAML config (cv.folds, cv.only, cv.folds_file)")
    cv.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    cv.set_defaults(run=cmd_cv)

    tune = commands.add_parser("tune", help="hyper-parameter search (Optuna) over tune.space on the first tune.folds "
                                            "folds: study.db, trials.csv, best.yaml")
    tune.add_argument("config", type=Path, help="YAML config with a tune: section (space, trials, folds, storage)")
    tune.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    tune.set_defaults(run=cmd_tune)

    methods = known_methods()
    ensemble = commands.add_parser("ensemble", help=f"blend prediction files fitted on OOF: {', '.join(methods)}; "
                                                    "optional macro-F1 calibration")
    ensemble.add_argument("inputs", type=Path, nargs="+",
                          help="OOF files (with gold, fold), cv folders or run folders; folders' models can predict "
                               "new files later (mmtune predict OUT.json)")
    ensemble.add_argument("--out", type=Path, required=True,
                          help="ensemble predictions CSV (+ .oof.csv, and .json: the scores and the saved blend)")
    ensemble.add_argument("--method", default="mean",
                          help=" | ".join(methods) + " (auto: the best of best, mean, weighted, greedy and stack by "
                                                     "nested CV on the OOF rows)")
    ensemble.add_argument("--test", type=Path, nargs="+", help="test prediction files, one per input, in order")
    ensemble.add_argument("--rules", type=Path, help="YAML priority rules (for --method rules)")
    ensemble.add_argument("--force-rules", action="store_true",
                          help="apply every rule, also one that lowers OOF macro-F1 (such a rule is skipped otherwise)")
    ensemble.add_argument("--label-map", type=Path, help="YAML 'source_label: [target labels]' for other label sets")
    ensemble.add_argument("--calibrate", nargs="?", const="auto", choices=["auto", "always"],
                          help="temperature + per-class biases fitted on OOF for macro-F1, applied to test; "
                               "auto (default) keeps the biases only when their nested-CV gain is positive")
    ensemble.add_argument("--seed", type=seed, default=0)
    ensemble.set_defaults(run=cmd_ensemble)

    submit = commands.add_parser("submit", help="prediction CSV -> ViMMSD results.zip (or --format csv); prints the "
                                                "predicted label distribution next to the training one")
    submit.add_argument("predictions", type=Path,
                        help="prediction CSV of the test file (test.csv, an ensemble's --out, mmtune predict's --out)")
    submit.add_argument("--out", type=Path, required=True, help="results.zip (or a .csv with --format csv)")
    submit.add_argument("--phase", choices=["dev", "test"], default="test",
                        help="the competition phase written into results.json (default: test)")
    submit.add_argument("--format", dest="fmt", choices=["vimmsd", "csv"], default="vimmsd",
                        help="vimmsd: CodaLab's results.zip; csv: a Kaggle-style id,label file (default: vimmsd)")
    submit.add_argument("--ids", type=Path, help="the test data file: every post in it must be predicted")
    submit.add_argument("--labels", help="comma-separated known labels (default: the ViMMSD four for vimmsd)")
    submit.add_argument("--source", type=Path,
                        help="run folder, cv folder or ensemble .json the predictions came from: its training labels "
                             "are shown beside the predicted ones (default: the run or cv folder holding the file)")
    submit.add_argument("--force", action="store_true",
                        help="submit a file with gold/fold columns (training predictions, e.g. oof.csv) all the same")
    submit.add_argument("--config", type=Path, help="YAML config whose data.format / data.columns read --ids")
    submit.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="config overrides (for reading --ids)")
    submit.set_defaults(run=cmd_submit)

    report = commands.add_parser("report", help="one self-contained HTML page of a run or cv folder, or comparing "
                                                "several (leaderboard, curves, per-class F1, disagreements)")
    report.add_argument("dirs", type=Path, nargs="+", metavar="DIR",
                        help="a run folder (mmtune train) or a cv folder (mmtune cv); several, or a folder holding "
                             "runs, cv folders and ensembles: one page comparing them")
    report.add_argument("--out", type=Path, help="HTML file (default: DIR/report.html; needed with several DIRs)")
    report.add_argument("--gold", type=Path, help="id,label CSV of the test posts: the leaderboard scores test files")
    report.add_argument("--gallery", type=bounded_int(0), default=120,
                        help="most misclassified (or, comparing, disagreed-on) posts shown (0 = none)")
    report.set_defaults(run=cmd_report)

    runs = commands.add_parser("runs", help="leaderboard of every run, cv folder, ensemble and export under DIRs: "
                                            "model, differing settings, OOF macro-F1, per-class F1, test, time")
    runs.add_argument("dirs", type=Path, nargs="*", metavar="DIR", help="folders to search (default: .)")
    runs.add_argument("--sort", default="macro_f1", metavar="COLUMN",
                      help="name, kind, model, macro_f1 (default), test_macro_f1, wall_s, date, a differing config "
                           "key (train.lr) or f1:LABEL; scores and dates high first, the rest low first")
    runs.add_argument("--gold", type=Path, help="id,label CSV of the test posts: scores each test prediction file")
    output = runs.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the leaderboard as JSON instead of a table")
    output.add_argument("--csv", action="store_true", help="print the leaderboard as CSV instead of a table")
    runs.set_defaults(run=cmd_runs)


    export = commands.add_parser("export", help="a run or cv folder as a self-contained folder others can load "
                                                "(weights, base checkpoints, labels, config, model card)")
    export.add_argument("run_dir", type=Path, help="a run folder (mmtune train) or a cv folder (mmtune cv)")
    export.add_argument("out", type=Path, help="new or empty folder to write")
    export.add_argument("--merge", action="store_true",
                        help="vlm-* with LoRA: also write merged/, the base model with the adapters merged in")
    export.set_defaults(run=cmd_export)

    serve = commands.add_parser("serve", help="an HTTP API (POST /v1/classify) and a page to try a run or export")
    serve.add_argument("model", type=Path, help="an export folder (mmtune export), a run folder or a cv folder")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=bounded_int(1), default=8000)
    serve.add_argument("--max-batch", type=bounded_int(1), default=32, help="most posts in one forward pass")
    serve.add_argument("--max-wait-ms", type=bounded_int(0), default=10,
                       help="how long the first post of a batch waits for others to join it")
    serve.set_defaults(run=cmd_serve)

    config = commands.add_parser("config", help="check a config as a run would and print it resolved, or every "
                                                "key with its default, doc and accepted values (--schema)")
    config.add_argument("overrides", nargs="*", metavar="[CONFIG] section.key=value",
                        help="a YAML config (first, as train takes it), then config overrides")
    config.add_argument("--config", type=Path, help="the YAML config, as the first argument gives it")
    config.add_argument("--schema", action="store_true", help="list every key, its default, doc and accepted values")
    config.set_defaults(run=cmd_config)
    for verb, help_text in GENERATIVE_COMMANDS.items():
        command = commands.add_parser(verb, help=help_text)
        command.add_argument("config", type=Path, help="YAML config")
        command.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
        command.add_argument("--resume", action="store_true", help="continue from the last checkpoint-N in output_dir")
        command.set_defaults(run=generative_command(verb))
    return parser
