"""`mmtune convert`: a checkpoint in a layout transformers does not load natively -> a native folder."""

from __future__ import annotations

from pathlib import Path


def convert_internvl(src: Path, dst: Path) -> Path:
    """An InternVL2 / InternVL2.5 / Vintern chat checkpoint (internvl_chat) -> transformers' InternVL folder."""
    from mmtune.models.internvl_chat.convert import convert  # torch and transformers: only for this verb

    return convert(src, dst)
