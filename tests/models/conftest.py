"""Fixtures shared by the model tests: demo posts and configs for the tiny VLM checkpoints (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmtune.config import Config, load_config
from mmtune.data.checks import load_posts
from mmtune.data.post import Post
from mmtune.demo import make_demo_data
from mmtune.models.kinds import build_classifier
from mmtune.testing.tiny import make_tiny

SARCASM = ["image-sarcasm", "multi-sarcasm", "not-sarcasm", "text-sarcasm"]


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The folder of a tiny checkpoint of `family` (mmtune.testing.tiny), made once per session."""
    root = tmp_path_factory.mktemp("tiny_encoders")

    def folder(family: str) -> Path:
        if not (root / family).exists():
            make_tiny(family, root / family)
        return root / family

    return folder


@pytest.fixture(scope="session")
def vlm_demo(tmp_path_factory: pytest.TempPathFactory):
    """40 labelled demo posts (48 px images, some with two images) and 8 test posts."""
    # With faults: one post has two images (the faulty rows are skipped by load_posts).
    return make_demo_data(tmp_path_factory.mktemp("vlm_demo"), n_train=40, n_test=8, seed=0, image_size=48,
                          inject_faults=True)


@dataclass
class VlmSetup:
    cfg: Config
    posts: list[Post]


@pytest.fixture(scope="session")
def vlm_setup(tiny_vlm, vlm_demo) -> Callable[..., VlmSetup]:
    """A config for a tiny `family` and `kind` (plus overrides) and the demo's training posts."""

    def make(family: str, kind: str = "vlm-generative", *overrides: str) -> VlmSetup:
        cfg = load_config(None, [f"model.kind={kind}", f"model.name={tiny_vlm(family)}", "model.vlm.prompt=vi_short",
                                 "model.vlm.image_size=32", "model.vlm.dropout=0.0", "model.vlm.hidden_size=16",
                                 *overrides])
        posts = load_posts(vlm_demo.train, vlm_demo.train_images, cfg.data, labels=SARCASM,
                           require_label=True).posts
        return VlmSetup(cfg, posts)

    return make


def noise_image(path: Path, height: int, width: int, rng: np.random.Generator) -> Path:
    """An RGB picture of uniform noise at `path`, in the format its suffix names."""
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def build(setup: VlmSetup) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_classifier(setup.cfg, SARCASM, len(SARCASM))


def train_steps(classifier: torch.nn.Module, examples: list, steps: int, lr: float = 1e-2,
                batch_size: int = 4) -> list[float]:
    """Losses of `steps` AdamW steps on one fixed batch (class CE, or the kind's own loss)."""
    classifier.train()
    batch = classifier.collate(examples[:batch_size], train=True)
    targets = torch.tensor([e.target for e in examples[:batch_size]])
    optimizer = torch.optim.AdamW([p for p in classifier.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        out = classifier(batch)
        loss = out if getattr(classifier, "provides_loss", False) else torch.nn.functional.cross_entropy(out, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    return losses


def eval_probs(classifier: torch.nn.Module, examples: list) -> torch.Tensor:
    classifier.eval()
    with torch.no_grad():
        return classifier(classifier.collate(examples, train=False)).float().softmax(-1)


def assert_trains_and_predicts(setup: VlmSetup) -> None:
    """Six steps on one batch lower the loss by 10%; evaluation gives [6, 4] probabilities summing to 1."""
    classifier = build(setup)
    examples = classifier.prepare(setup.posts, train=True)
    losses = train_steps(classifier, examples, steps=6, lr=1e-2)
    assert losses[-1] < losses[0] * 0.9, losses
    probs = eval_probs(classifier, examples[:6])
    assert probs.shape == (6, 4)
    torch.testing.assert_close(probs.sum(-1), torch.ones(6))
