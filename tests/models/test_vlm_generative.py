"""Kind vlm-generative on every tiny family: class and lm objectives train, predictions are probabilities."""

from __future__ import annotations

import pytest
import torch

from mmtune.models.vlm_families import family_names
from tests.models.conftest import assert_trains_and_predicts, build, eval_probs, train_steps


@pytest.mark.parametrize("family", family_names())
def test_class_objective_trains_and_predicts_probabilities(family, vlm_setup):
    assert_trains_and_predicts(vlm_setup(family, "vlm-generative"))


@pytest.mark.parametrize("family", ["qwen2-vl", "smolvlm", "llama"])
def test_lm_objective_trains_on_the_gold_answer(family, vlm_setup):
    setup = vlm_setup(family, "vlm-generative", "model.vlm.objective=lm")
    classifier = build(setup)
    assert classifier.provides_loss
    examples = classifier.prepare(setup.posts, train=True)
    batch = classifier.collate(examples[:4], train=True)
    assert batch["answer_target"].tolist() == [e.target for e in examples[:4]]
    losses = train_steps(classifier, examples, steps=6, lr=1e-2)
    assert losses[-1] < losses[0] * 0.9, losses
    # The gold answers became likelier: evaluation still scores every label.
    probs = eval_probs(classifier, examples[:4])
    targets = torch.tensor([e.target for e in examples[:4]])
    assert probs.shape == (4, 4) and probs[torch.arange(4), targets].mean() > 0.25


def test_lm_loss_is_the_gold_answers_token_cross_entropy(vlm_setup):
    setup = vlm_setup("internvl", "vlm-generative", "model.vlm.objective=lm")
    classifier = build(setup).train()
    examples = classifier.prepare(setup.posts[:3], train=True)
    batch = classifier.collate(examples, train=True)
    with torch.no_grad():
        loss = classifier(batch)
        prompt = {k: v for k, v in batch.items() if k != "answer_target"}
        from mmtune.models.label_scoring import answer_logprobs_loop

        logprobs = answer_logprobs_loop(classifier.vlm, prompt, classifier.answers)
    gold = logprobs[torch.arange(3), batch["answer_target"]]
    mask = classifier.answers.mask[batch["answer_target"]]
    torch.testing.assert_close(loss, -gold[mask].mean(), atol=1e-5, rtol=0)


def test_gradient_checkpointing_gives_the_cached_scores_and_trains(vlm_setup):
    plain = build(vlm_setup("qwen2.5-vl", "vlm-generative", "model.lora.enabled=true"))
    checkpointed = build(vlm_setup("qwen2.5-vl", "vlm-generative", "model.lora.enabled=true",
                                   "model.gradient_checkpointing=true"))
    setup = vlm_setup("qwen2.5-vl")
    examples = plain.prepare(setup.posts[:4], train=True)
    batch = plain.collate(examples, train=True)
    plain.train(), checkpointed.train()
    torch.testing.assert_close(checkpointed(batch), plain(batch), atol=1e-4, rtol=0)
    losses = train_steps(checkpointed, examples, steps=5, lr=2e-2)
    assert losses[-1] < losses[0], losses


def test_lora_trains_only_adapters_of_the_language_model(vlm_setup):
    classifier = build(vlm_setup("llava", "vlm-generative", "model.lora.enabled=true", "model.lora.r=4"))
    trainable = classifier.trainable_parameter_names()
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)
    with_vision = build(vlm_setup("llava", "vlm-generative", "model.lora.enabled=true",
                                  "model.vlm.lora_vision=true"))
    assert any("vision_tower" in n for n in with_vision.trainable_parameter_names())


def test_qlora_loads_4bit_and_trains_on_the_cpu(vlm_setup):
    bnb = pytest.importorskip("bitsandbytes")
    setup = vlm_setup("qwen2-vl", "vlm-generative", "model.quantize=4bit", "model.lora.enabled=true")
    classifier = build(setup)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in classifier.vlm.modules())
    assert all("lora_" in n for n in classifier.trainable_parameter_names())
    examples = classifier.prepare(setup.posts, train=True)
    losses = train_steps(classifier, examples, steps=5, lr=2e-2)
    assert losses[-1] < losses[0], losses
    probs = eval_probs(classifier, examples[:4])
    torch.testing.assert_close(probs.sum(-1), torch.ones(4))


def test_posts_keep_at_most_max_images(vlm_setup, caplog):
    setup = vlm_setup("qwen2-vl", "vlm-generative", "model.vlm.max_images=1")
    classifier = build(setup)
    with caplog.at_level("WARNING"):
        examples = classifier.prepare(setup.posts, train=False)
    multi = [e for e in examples if len(e.post.images) > 1]
    assert multi and "more than model.vlm.max_images=1" in caplog.text
    batch = classifier.collate(multi[:1], train=False)
    assert batch["image_grid_thw"].shape[0] == 1


def test_a_half_precision_base_trains_fp32_adapters(vlm_setup):
    setup = vlm_setup("qwen2", "vlm-generative", "model.lora.enabled=true", "model.vlm.dtype=float16")
    classifier = build(setup)
    dtypes = {name: p.dtype for name, p in classifier.named_parameters()}
    assert {dtypes[n] for n in classifier.trainable_parameter_names()} == {torch.float32}
    assert torch.float16 in set(dtypes.values())
    losses = train_steps(classifier, classifier.prepare(setup.posts, train=True), steps=3, lr=1e-2)
    assert all(torch.isfinite(torch.tensor(losses)))


def test_dora_adapters_train(vlm_setup):
    setup = vlm_setup("idefics3", "vlm-generative", "model.lora.enabled=true", "model.lora.dora=true")
    classifier = build(setup)
    assert any("lora_magnitude_vector" in n for n in classifier.trainable_parameter_names())
    losses = train_steps(classifier, classifier.prepare(setup.posts, train=True), steps=5, lr=2e-2)
    assert losses[-1] < losses[0], losses
