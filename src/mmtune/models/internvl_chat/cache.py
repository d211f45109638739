"""`model.name` naming an InternVL2 chat checkpoint (a folder, or a Hub id such as 5CD-AI/Vintern-1B-v2, whose
files but not its code are downloaded): converted once into a cache folder keyed by its content.

The key hashes every file the conversion reads (config.json, the safetensors, the tokenizer files), so an edited
or re-downloaded checkpoint gets a fresh conversion and an unchanged one is reused. The cache lives in
$MMTUNE_CONVERTED_CACHE, else ~/.cache/mmtune/converted. A conversion is written to a temporary folder and
renamed into place, so that processes converting at once (DDP ranks) never see half a folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import hf_hub_download, snapshot_download

from mmtune.models.internvl_chat.convert import is_internvl_chat, read_original, write_native

log = logging.getLogger(__name__)

CACHE_ENV = "MMTUNE_CONVERTED_CACHE"
# Besides config.json and the weights: what the converted folder is made of.
_READ_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "tokenizer.model",
               "special_tokens_map.json", "added_tokens.json")
_DOWNLOADS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]  # not the remote code (*.py)


def native_checkpoint(name: str) -> str:
    """`name`, or the converted copy of it when it is a checkpoint in InternVL2's chat format (converting it once)."""
    src = _original_folder(name)
    if src is None:
        return name
    original = read_original(src)
    label = Path(name.rstrip("/")).name or src.resolve().name  # a Hub snapshot's folder is named by its commit
    target = cache_root() / f"{label}-{_content_key([src / 'config.json', *original.weight_files])}"
    if (target / "config.json").is_file():
        log.info(f"{name}: InternVL2 chat checkpoint, using its native conversion in {target}")
        return str(target)
    log.info(f"{name}: InternVL2 chat checkpoint, converting it to transformers' InternVL in {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write_native(original, scratch)
        os.replace(scratch, target)
    except OSError:
        if not (target / "config.json").is_file():  # not a race that another process won
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return str(target)


def _original_folder(name: str) -> Path | None:
    """The folder of the chat checkpoint `name` names, downloaded if it is a Hub id; None for any other model."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        return folder if is_internvl_chat(folder) else None
    try:
        config = Path(hf_hub_download(name, "config.json"))
    except (OSError, ValueError):  # not a Hub id, no such repository, or offline without it in the Hub cache
        return None
    if not is_internvl_chat(config.parent):
        return None
    return Path(snapshot_download(name, allow_patterns=_DOWNLOADS))


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mmtune" / "converted").expanduser()


def _content_key(files: list[Path]) -> str:
    digest = hashlib.sha256()
    folder = files[0].parent
    for path in [*files, *(folder / name for name in _READ_FILES)]:
        if path.is_file():
            digest.update(f"{path.name}:{path.stat().st_size}:".encode())
            with path.open("rb") as handle:
                digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:16]
