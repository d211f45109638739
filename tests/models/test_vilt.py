import pytest
import torch

from mmtune.config import load_config
from mmtune.data.checks import load_posts
from mmtune.demo import make_demo_data
from mmtune.models.kinds import build_classifier
from mmtune.testing.tiny import make_tiny

LABELS = ["image-sarcasm", "multi-sarcasm", "not-sarcasm", "text-sarcasm"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("vilt")
    demo = make_demo_data(root / "demo", n_train=40, n_test=8, seed=0, image_size=48, inject_faults=True)
    return demo, make_tiny("vilt", root / "vilt")


def build(setup, *overrides):
    demo, model_dir = setup
    cfg = load_config(None, ["model.kind=vilt", f"model.name={model_dir}", *overrides])
    posts = load_posts(demo.train, demo.train_images, cfg.data, labels=LABELS, require_label=True).posts
    classifier = build_classifier(cfg, LABELS, len(LABELS))
    return classifier, classifier.prepare(posts, train=True)


def test_vilt_classifies_single_and_multi_image_posts(setup):
    classifier, examples = build(setup)
    classifier.eval()
    multi = [e for e in examples if len(e.post.images) > 1]
    assert multi, "the demo data has a post with two images"
    batch = classifier.collate(examples[:3] + multi, train=False)
    assert batch["pixel_values"].shape[:2] == (4, 2) and batch["image_counts"].tolist() == [1, 1, 1, 2]
    logits = classifier(batch)
    assert logits.shape == (4, 4)
    # The padded image of a single-image post does not change its output.
    alone = classifier(classifier.collate(examples[:1], train=False))
    torch.testing.assert_close(alone[0], logits[0], atol=1e-5, rtol=1e-4)


def _train_steps(classifier, examples, steps=8):
    params = [p for p in classifier.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=3e-3)
    batch = classifier.collate(examples[:8], train=True)
    target = torch.tensor([e.target for e in examples[:8]])
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(classifier(batch), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_vilt_loss_falls_and_frozen_blocks_stay(setup):
    classifier, examples = build(setup, "model.freeze.preset=last_n", "model.freeze.last_n=1", "model.vilt.dropout=0")
    frozen = {n: p.detach().clone() for n, p in classifier.named_parameters() if not p.requires_grad}
    assert frozen and any("layer.0." in n for n in frozen)
    losses = _train_steps(classifier, examples)
    assert losses[-1] < losses[0]
    for name, param in classifier.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name


def test_two_stage_switch_restores_the_configured_trainable_set(setup):
    classifier, _ = build(setup, "model.freeze.preset=last_n", "model.freeze.last_n=1")
    configured = {n for n, p in classifier.named_parameters() if p.requires_grad}
    classifier.set_backbone_trainable(False)
    assert {n for n, p in classifier.named_parameters() if p.requires_grad} == {
        n for n in configured if n.startswith("head.")}
    classifier.set_backbone_trainable(True)
    assert {n for n, p in classifier.named_parameters() if p.requires_grad} == configured
    assert set(classifier.trainable_parameter_names()) == configured


def test_vilt_with_lora_trains_only_adapters_and_head(setup):
    classifier, examples = build(setup, "model.lora.enabled=true", "model.lora.r=4")
    trainable = [n for n, p in classifier.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    assert _train_steps(classifier, examples, steps=4)[-1] < _train_steps(classifier, examples, steps=1)[0] + 1


def test_vilt_qlora_loads_4bit_and_trains_adapters(setup):
    pytest.importorskip("bitsandbytes")
    classifier, examples = build(setup, "model.quantize=4bit", "model.lora.enabled=true", "model.lora.r=4")
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in classifier.backbone.modules())
    trainable = [n for n, p in classifier.named_parameters() if p.requires_grad]
    assert all("lora_" in n or n.startswith("head.") for n in trainable)
    losses = _train_steps(classifier, examples, steps=3)
    assert all(torch.isfinite(torch.tensor(losses)))
