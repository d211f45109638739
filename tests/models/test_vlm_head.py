"""Kind vlm-head on every tiny family: pooled hidden state into a new head; adapters and head reload together."""

from __future__ import annotations

import pytest
import torch

from mmtune.models.vlm_families import family_names
from mmtune.training import checkpoint as ckpt
from tests.models.conftest import assert_trains_and_predicts, build, eval_probs, train_steps


@pytest.mark.parametrize("family", family_names())
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


@pytest.mark.parametrize("family", ["qwen2-vl", "internvl"])
def test_last_n_trains_the_last_language_model_blocks_not_the_vision_tower(tiny_vlm, family):
    from mmtune.config import load_config
    from mmtune.models.vlm_loading import load_vlm

    cfg = load_config(None, ["model.kind=vlm-head", f"model.name={tiny_vlm(family)}", "model.freeze.preset=last_n",
                             "model.freeze.last_n=1"])
    model = load_vlm(cfg.model).model
    decoder = model.get_decoder()
    last_block = {id(p) for p in decoder.layers[-1].parameters()}
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and any(id(p) in last_block for _, p in trainable)
    decoder_params = {id(p) for p in decoder.parameters()}
    earlier = {id(p) for block in decoder.layers[:-1] for p in block.parameters()}
    assert all(id(p) in decoder_params and id(p) not in earlier for _, p in trainable), \
        [name for name, p in trainable if id(p) not in decoder_params or id(p) in earlier]


def test_a_base_with_trained_parameters_is_not_loaded_in_half_precision(monkeypatch):
    from mmtune.config import load_config
    from mmtune.models.vlm_loading import weights_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a T4: no bf16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)

    def dtype(*overrides: str) -> torch.dtype:
        return weights_dtype(load_config(None, ["model.kind=vlm-head", *overrides]).model)

    assert dtype("model.lora.enabled=true") == torch.float16
    assert dtype("model.freeze.preset=all") == torch.float16
    assert dtype("model.freeze.preset=all", "model.freeze.train_globs=[lm_head.*]") == torch.float32
    assert dtype("model.freeze.preset=last_n") == torch.float32


def test_an_untied_language_model_head_is_not_trained_by_vlm_head(vlm_setup):
    setup = vlm_setup("llava", "vlm-head", "model.freeze.preset=none")
    model = build(setup)
    output, inputs = model.vlm.get_output_embeddings(), model.vlm.get_input_embeddings()
    if output.weight is inputs.weight:
        pytest.skip("tied output embeddings")
    assert not output.weight.requires_grad
    assert not any(name.startswith("vlm.lm_head") for name in model.trainable_parameter_names())
    assert any(name.startswith("vlm.") for name in model.trainable_parameter_names())
