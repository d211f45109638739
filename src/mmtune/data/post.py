"""A post: the unit every part of mmtune reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Post:
    """One image+text example. `images` are resolved paths inside the images folder."""

    id: str
    images: tuple[Path, ...]
    text: str
    extra: dict[str, str] = field(default_factory=dict)
    label: str | None = None
