"""Which backbone parameters train: freeze presets, glob overrides, and saving only what trains.

The head lives outside the backbone, so every preset here is about the backbone alone: `all` leaves a pure
feature extractor. Frozen means `requires_grad=False`; modes (train/eval) are the trainer's business, but note
that BatchNorm running statistics and dropout in a frozen part still follow `module.train()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import torch
from torch import nn

from mmtune.errors import InputError

PRESETS = ("none", "all", "last_n", "embeddings", "attention")
# Last name component of a block list; leading underscores are ignored so EfficientNet's `_blocks` counts.
BLOCK_LIST_NAMES = ("layer", "layers", "blocks", "stages")
ATTENTION_MARKERS = ("attention", "attn")  # covers `self_attn`, `SelfAttention`, `crossattention`
EMBEDDING_MARKER = "embed"  # covers `embeddings`, `embed_tokens`, `patch_embedding`, `word_embeddings`


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


def find_blocks(module: nn.Module) -> nn.ModuleList | nn.Sequential | None:
    """The repeated transformer/conv blocks of a backbone (`encoder.layer`, `encoder.layers`, `stages`...)."""
    found = _find_blocks_named(module)
    return found[1] if found else None


def _find_blocks_named(module: nn.Module) -> tuple[str, nn.ModuleList | nn.Sequential] | None:
    candidates = [(name, child) for name, child in module.named_modules()
                  if isinstance(child, (nn.ModuleList, nn.Sequential)) and len(child) > 0
                  and name.rsplit(".", 1)[-1].lstrip("_") in BLOCK_LIST_NAMES]
    # Only outermost lists: ConvNeXt's `stages.2.layers` (9 blocks) is longer than `stages` (4) but lies inside it.
    names = [name for name, _ in candidates]
    outer = [(name, child) for name, child in candidates
             if not any(name.startswith(other + ".") for other in names if other != name)]
    if not outer:
        return None
    return max(outer, key=lambda item: len(item[1]))  # max keeps the first of equals: module order breaks ties


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
    trainable = {prefix + name for name in _preset_trainable(target, preset, last_n, inner)}
    frozen_by_glob = _glob_matches(params, freeze_globs, "model.freeze.freeze_globs")
    trained_by_glob = _glob_matches(params, train_globs, "model.freeze.train_globs")
    trainable = (trainable - frozen_by_glob) | trained_by_glob
    for name, param in params.items():
        # Integer (quantized) weights cannot require grad; they stay frozen whatever the preset says.
        param.requires_grad_(name in trainable and (param.is_floating_point() or param.is_complex()))
    return _report(module, preset, last_n)


def _preset_trainable(module: nn.Module, preset: str, last_n: int, names: list[str]) -> set[str]:
    if preset == "none":
        return set(names)
    if preset == "all":
        return set()
    if preset == "last_n":
        return _last_n_trainable(module, last_n, names)
    if preset == "embeddings":
        embeddings = _embedding_names(module, names)
        if not embeddings:
            raise InputError(f"model.freeze.preset: 'embeddings' found no embedding parameters in "
                             f"{type(module).__name__}")
        return set(names) - embeddings
    if preset == "attention":
        attention = {name for name in names if _in_attention(name)}
        if not attention:
            raise InputError(f"model.freeze.preset: 'attention' found no attention parameters in "
                             f"{type(module).__name__}")
        return attention
    raise InputError(f"model.freeze.preset: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")


def _last_n_trainable(module: nn.Module, last_n: int, names: list[str]) -> set[str]:
    found = _find_blocks_named(module)
    if found is None:
        raise InputError(f"model.freeze.preset: 'last_n' needs a block list (a ModuleList named "
                         f"{'/'.join(BLOCK_LIST_NAMES)}) and {type(module).__name__} has none")
    list_name, blocks = found
    if last_n < 1 or last_n > len(blocks):
        raise InputError(f"model.freeze.last_n: {last_n} is not between 1 and the {len(blocks)} blocks of "
                         f"{type(module).__name__} (use preset 'all' or 'none' for the ends)")
    position = {child: i for i, (child, _) in enumerate(blocks.named_children())}
    block_index = {name: position[name[len(list_name) + 1:].split(".", 1)[0]]
                   for name in names if name.startswith(list_name + ".")}
    first_trained = len(blocks) - last_n
    trainable = {name for name, index in block_index.items() if index >= first_trained}
    # Final norms and poolers: whatever is registered after the blocks (HF registers modules in forward order).
    last_block_param = max((i for i, name in enumerate(names) if name in block_index), default=len(names))
    return trainable | set(names[last_block_param + 1:])


def _embedding_names(module: nn.Module, names: Iterable[str]) -> set[str]:
    owners = {name for name, child in module.named_modules() if isinstance(child, nn.Embedding)}
    return {name for name in names
            if any(EMBEDDING_MARKER in part.lower() for part in name.split(".")[:-1])
            or name.rsplit(".", 1)[0] in owners}


def _in_attention(name: str) -> bool:
    return any(marker in part.lower() for part in name.split(".")[:-1] for marker in ATTENTION_MARKERS)


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


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a run with a partly frozen backbone must save to be resumed or reused.

    Trainable parameters, plus the persistent buffers of modules that own a trainable parameter (a trained
    BatchNorm's running statistics move with its weights). Frozen parameters are left out: they are reloaded
    from the pretrained checkpoint. Tensors are detached but share storage, like `nn.Module.state_dict`.
    """
    owners_with_trainable = {name.rsplit(".", 1)[0] if "." in name else ""
                             for name, param in model.named_parameters() if param.requires_grad}
    state: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        keep = tensor.requires_grad if isinstance(tensor, nn.Parameter) else owner in owners_with_trainable
        if keep:
            state[name] = tensor.detach()
    return state


def load_trainable_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load what `trainable_state_dict` saved; the names and shapes must match this model's trainable set."""
    expected = trainable_state_dict(model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = sorted(name for name in set(expected) & set(state) if expected[name].shape != state[name].shape)
    if missing or unexpected or reshaped:
        details = "; ".join(_few(label, names) for label, names in
                            (("missing", missing), ("unexpected", unexpected), ("other shape", reshaped)) if names)
        raise InputError("model.freeze / model.lora: the checkpoint's trainable tensors do not match this model "
                         f"({details}); resume with the settings the checkpoint was trained with")
    model.load_state_dict(state, strict=False)


def _few(label: str, names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{label} {len(names)}: {', '.join(names[:shown])}{more}"
