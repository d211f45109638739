"""Kind vlm-head on every tiny family: pooled hidden state into a new head; adapters and head reload together."""

from __future__ import annotations

import pytest
import torch

from mmtune.models.tiny_vlm import VLM_FAMILIES
from mmtune.training import checkpoint as ckpt
from tests.models.conftest import assert_trains_and_predicts, build, eval_probs, train_steps


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_head_trains_and_predicts_probabilities(family, vlm_setup):
    assert_trains_and_predicts(vlm_setup(family, "vlm-head"))


def test_last_token_pooling_ignores_left_padding_and_mean_differs(vlm_setup):
    setup = vlm_setup("internvl", "vlm-head")
    classifier = build(setup).eval()
    examples = classifier.prepare(setup.posts, train=False)
    with torch.no_grad():
        together = classifier(classifier.collate(examples[:4], train=False))
        alone = classifier(classifier.collate(examples[1:2], train=False))
        classifier.pooling = "mean"
        mean = classifier(classifier.collate(examples[:4], train=False))
    torch.testing.assert_close(alone[0], together[1], atol=1e-4, rtol=0)
    assert not torch.allclose(mean, together)


def test_lora_adapters_and_head_are_saved_and_reloaded_together(vlm_setup):
    setup = vlm_setup("smolvlm", "vlm-head", "model.lora.enabled=true", "model.lora.r=4")
    trained = build(setup)
    names = trained.trainable_parameter_names()
    assert any(n.startswith("head.") for n in names) and any("lora_" in n for n in names)
    assert all(n.startswith("head.") or "lora_" in n for n in names)
    examples = trained.prepare(setup.posts, train=True)
    train_steps(trained, examples, steps=3, lr=1e-2)
    state = ckpt.trainable_state(trained, names)
    fresh = build(setup)
    before = eval_probs(fresh, examples[:4])
    ckpt.load_trainable_state(fresh, state)
    torch.testing.assert_close(eval_probs(fresh, examples[:4]), eval_probs(trained, examples[:4]))
    assert not torch.allclose(before, eval_probs(fresh, examples[:4]))


def test_head_only_stage_freezes_the_adapters(vlm_setup):
    classifier = build(vlm_setup("qwen2", "vlm-head", "model.lora.enabled=true"))
    classifier.set_backbone_trainable(False)
    trainable = [n for n, p in classifier.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("head.") for n in trainable)
    groups = {g.role: len(g.params) for g in classifier.parameter_groups()}
    assert groups["head"] > 0 and groups["backbone"] > 0
