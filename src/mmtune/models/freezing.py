"""Which backbone parameters train: a freeze preset (models/freeze_presets/), then glob overrides.

The head lives outside the backbone, so every preset here is about the backbone alone: `all` leaves a pure
feature extractor. Frozen means `requires_grad=False`; modes (train/eval) are the trainer's business, but note
that BatchNorm running statistics and dropout in a frozen part still follow `module.train()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from torch import nn

from mmtune.errors import InputError
from mmtune.models.freeze_presets import get_preset


@dataclass
class FreezeReport:
    preset: str
    trainable: int
    total: int
    trainable_modules: list[str] = field(default_factory=list)
    last_n: int | None = None

    def summary(self) -> str:
        preset = f"last_n={self.last_n}" if self.preset == "last_n" else self.preset
        share = 100.0 * self.trainable / self.total if self.total else 0.0
        where = ", ".join(self.trainable_modules) or "nothing"
        return (f"freeze {preset}: {self.trainable:,} / {self.total:,} backbone parameters trainable "
                f"({share:.2f}%) in {where}")


def apply_freeze(module: nn.Module, preset: str, last_n: int = 0, freeze_globs: Sequence[str] = (),
                 train_globs: Sequence[str] = (), scope: str = "") -> FreezeReport:
    """Set `requires_grad` on every parameter of `module` from a preset, then the globs (train_globs last).

    `last_n` is read only by the `last_n` preset (the config always carries a default for it).
    `scope` (a dotted submodule name, e.g. a VLM's language model) is what the preset reads; parameters
    outside it start frozen. The globs match full names. Everything is checked before anything changes, so a
    bad key leaves the module as it was.
    """
    params = dict(module.named_parameters())
    target = module.get_submodule(scope) if scope else module
    prefix = f"{scope}." if scope else ""
    inner = [name for name, _ in target.named_parameters()]
    trainable = {prefix + name for name in get_preset(preset).trainable(target, inner, last_n)}
    frozen_by_glob = _glob_matches(params, freeze_globs, "model.freeze.freeze_globs")
    trained_by_glob = _glob_matches(params, train_globs, "model.freeze.train_globs")
    trainable = (trainable - frozen_by_glob) | trained_by_glob
    for name, param in params.items():
        # Integer (quantized) weights cannot require grad; they stay frozen whatever the preset says.
        param.requires_grad_(name in trainable and (param.is_floating_point() or param.is_complex()))
    return _report(module, preset, last_n)


def _glob_matches(params: dict[str, nn.Parameter], globs: Sequence[str], key: str) -> set[str]:
    matched: set[str] = set()
    for glob in globs:
        hits = {name for name in params if fnmatchcase(name, glob)}
        if not hits:
            raise InputError(f"{key}: {glob!r} matches no parameter name{_glob_hint(params, glob)}")
        matched |= hits
    return matched


def _glob_hint(params: dict[str, nn.Parameter], glob: str) -> str:
    # The usual slip is naming a module ("pooler") where a parameter glob ("pooler.*") is needed.
    if any(fnmatchcase(name, glob + ".*") for name in params):
        return f" (did you mean {glob + '.*'!r}?)"
    example = next(iter(params), None)
    return f" (names look like {example!r})" if example else " (the module has no parameters)"


def _report(module: nn.Module, preset: str, last_n: int) -> FreezeReport:
    trainable = total = 0
    modules: list[str] = []
    for name, param in module.named_parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
            top = name.split(".", 1)[0]
            if top not in modules:
                modules.append(top)
    return FreezeReport(preset=preset, trainable=trainable, total=total, trainable_modules=modules,
                        last_n=last_n if preset == "last_n" else None)
