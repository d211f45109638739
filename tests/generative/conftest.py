"""Fixtures for the generative side: tiny SigLIP / CLIP / Qwen2 / LLaMA, a LLaVA built from parts, chat data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from mmtune.config import BuildConfig, load_config
from mmtune.generative.build_vlm import build_llava, save_vlm
from mmtune.testing.tiny import make_tiny

COLOURS = {"đỏ": (220, 20, 20), "xanh": (20, 20, 220), "vàng": (230, 220, 20), "đen": (5, 5, 5)}


@pytest.fixture(scope="session")
def tiny_parts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("parts")
    families = ("siglip", "clip", "qwen2", "llama", "convnext", "smolvlm")
    return {family: make_tiny(family, root / family) for family in families}


@pytest.fixture(scope="session")
def tiny_llava(tiny_parts, tmp_path_factory) -> Path:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        built = build_llava(BuildConfig(vision=str(tiny_parts["siglip"]), llm=str(tiny_parts["qwen2"])))
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
    return write_colour_chat(tmp_path, 8)


def write_colour_chat(root: Path, n: int) -> dict[str, Path]:
    """`n` images with chat, preference and caption rows about their colour, written under `root`."""
    images = root / "images"
    pairs = write_images(images, n)
    chat = [{"images": [name], "messages": [{"role": "user", "content": "Màu gì?"},
                                            {"role": "assistant", "content": f"màu {colour}"}]}
            for name, colour in pairs]
    prefs = [{"images": [name], "prompt": "Màu gì?", "chosen": f"màu {colour}", "rejected": "không biết"}
             for name, colour in pairs]
    captions = [{"image": name, "caption": f"một hình màu {colour}"} for name, colour in pairs]
    return {"images": images, "chat": write_jsonl(root / "chat.jsonl", chat),
            "prefs": write_jsonl(root / "prefs.jsonl", prefs),
            "captions": write_jsonl(root / "captions.jsonl", captions)}


def run_config(model: Path | str | None, train: Path, images: Path, out: Path, *overrides: str):
    base = [f"output_dir={out}", f"data.train={train}", f"data.train_images={images}", "train.log_every_steps=1",
            "train.log_with=[]", "train.batch_size=4", "train.lr=0.003", "train.warmup_ratio=0"]
    if model is not None:
        base.append(f"model.name={model}")
    return load_config(None, [*base, *overrides])


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
