"""Fixtures for the generative side: a tiny SigLIP + causal LM, the LLaVA built from them, chat data on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from mmtune.config import BuildConfig, load_config
from mmtune.generative.build_vlm import build_llava, save_vlm
from mmtune.models.tiny import make_tiny

COLOURS = {"đỏ": (220, 20, 20), "xanh": (20, 20, 220), "vàng": (230, 220, 20), "đen": (5, 5, 5)}


def tiny_causal_lm(out: Path, tokenizer_source: Path) -> Path:
    """A 2-layer Qwen2 causal LM that uses the tiny SigLIP's tokenizer (saved with it, as a Hub LM folder)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, max_position_embeddings=256,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=None, tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        Qwen2ForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_parts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("parts")
    siglip = make_tiny("siglip", root / "siglip")
    return {"siglip": siglip, "lm": tiny_causal_lm(root / "lm", siglip), "convnext": make_tiny("convnext", root / "cn")}


@pytest.fixture(scope="session")
def tiny_llava(tiny_parts, tmp_path_factory) -> Path:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        built = build_llava(BuildConfig(vision=str(tiny_parts["siglip"]), llm=str(tiny_parts["lm"])))
    return save_vlm(built, tmp_path_factory.mktemp("llava") / "model")


def write_images(folder: Path, n: int) -> list[tuple[str, str]]:
    """`n` solid-colour images: (file name, Vietnamese colour name)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    out = []
    for i in range(n):
        colour = names[i % len(names)]
        Image.new("RGB", (40, 30), COLOURS[colour]).save(folder / f"{i}.png")
        out.append((f"{i}.png", colour))
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def colour_chat(tmp_path) -> dict[str, Path]:
    """Chat rows asking an image's colour (messages layout), and preference rows on the same images."""
    images = tmp_path / "images"
    pairs = write_images(images, 8)
    chat = [{"images": [name], "messages": [{"role": "user", "content": "Màu gì?"},
                                            {"role": "assistant", "content": f"màu {colour}"}]}
            for name, colour in pairs]
    prefs = [{"images": [name], "prompt": "Màu gì?", "chosen": f"màu {colour}", "rejected": "không biết"}
             for name, colour in pairs]
    captions = [{"image": name, "caption": f"một hình màu {colour}"} for name, colour in pairs]
    return {"images": images, "chat": write_jsonl(tmp_path / "chat.jsonl", chat),
            "prefs": write_jsonl(tmp_path / "prefs.jsonl", prefs),
            "captions": write_jsonl(tmp_path / "captions.jsonl", captions)}


def run_config(model: Path | str | None, train: Path, images: Path, out: Path, *overrides: str):
    base = [f"output_dir={out}", f"data.train={train}", f"data.train_images={images}", "train.log_every_steps=1",
            "train.log_with=[]", "train.batch_size=4", "train.lr=0.003", "train.warmup_ratio=0"]
    if model is not None:
        base.append(f"model.name={model}")
    return load_config(None, [*base, *overrides])


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
