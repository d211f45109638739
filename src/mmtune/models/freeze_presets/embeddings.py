"""embeddings: everything trains but the embeddings (token, position and patch embeddings)."""

from __future__ import annotations

from torch import nn

from mmtune.errors import InputError
from mmtune.models.freeze_presets import FreezePreset

EMBEDDING_MARKER = "embed"  # covers `embeddings`, `embed_tokens`, `patch_embedding`, `word_embeddings`


def embedding_names(module: nn.Module, names: list[str]) -> set[str]:
    owners = {name for name, child in module.named_modules() if isinstance(child, nn.Embedding)}
    return {name for name in names
            if any(EMBEDDING_MARKER in part.lower() for part in name.split(".")[:-1])
            or name.rsplit(".", 1)[0] in owners}


def _all_but_embeddings(module: nn.Module, names: list[str], last_n: int) -> set[str]:
    embeddings = embedding_names(module, names)
    if not embeddings:
        raise InputError(f"model.freeze.preset: 'embeddings' found no embedding parameters in "
                         f"{type(module).__name__}")
    return set(names) - embeddings


PRESET = FreezePreset(_all_but_embeddings, language_model_only=True)
