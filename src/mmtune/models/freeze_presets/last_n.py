"""last_n: the last `model.freeze.last_n` blocks train, with whatever comes after them (final norms, poolers)."""

from __future__ import annotations

from torch import nn

from mmtune.errors import InputError
from mmtune.models.freeze_presets import FreezePreset

# Last name component of a block list; leading underscores are ignored so EfficientNet's `_blocks` counts.
BLOCK_LIST_NAMES = ("layer", "layers", "blocks", "stages")


def find_blocks(module: nn.Module) -> tuple[str, nn.ModuleList | nn.Sequential] | None:
    """The name and list of a backbone's repeated transformer/conv blocks (`encoder.layer`, `stages`...)."""
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


def _last_blocks(module: nn.Module, names: list[str], last_n: int) -> set[str]:
    found = find_blocks(module)
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


PRESET = FreezePreset(_last_blocks, language_model_only=True)
