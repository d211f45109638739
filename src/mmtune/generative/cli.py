"""The generative subcommands: `mmtune sft`, `mmtune dpo`, `mmtune build-vlm` (each: CONFIG [k=v ...] [--resume])."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from mmtune.config import load_config
from mmtune.outputs import check_run
from mmtune.terminal import plain_console

console = plain_console()

_COMMANDS: dict[str, str] = {
    "sft": "supervised fine-tuning of a VLM on chat data (TRL SFTTrainer; only answers are trained)",
    "dpo": "preference tuning of a VLM on (images, prompt, chosen, rejected) rows (TRL DPOTrainer)",
    "build-vlm": "build a LLaVA-style VLM from a vision encoder and an LLM (build.stage 0, 1 or 2)",
}


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    for name, help_text in _COMMANDS.items():
        command = subparsers.add_parser(name, help=help_text)
        command.add_argument("config", type=Path, help="YAML config")
        command.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
        command.add_argument("--resume", action="store_true", help="continue from the last checkpoint-N in output_dir")
        command.set_defaults(run=_runner(name))


def _runner(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        cfg = load_config(args.config, args.overrides)
        check_run(cfg)
        stopped = _train_function(name)(cfg, resume=args.resume)
        if stopped in ("time_budget", "signal"):
            hint = f"mmtune {name} {args.config} --resume {' '.join(args.overrides)}".rstrip()
            console.print(f"stopped ({stopped}); continue with: {hint}")
            return 0 if stopped == "time_budget" else 130
        console.print(f"done: {Path(cfg.output_dir) / 'model'}")
        return 0

    return run


def _train_function(name: str) -> Callable[..., str]:
    if name == "sft":
        from mmtune.generative.sft import run_sft

        return run_sft
    if name == "dpo":
        from mmtune.generative.dpo import run_dpo

        return run_dpo
    from mmtune.generative.stages import run_build

    return run_build



