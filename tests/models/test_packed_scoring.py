"""Packed label scoring (the prompt once, then the K answers under a 4D mask) equals the per-label loop: scores and
gradients, with and without gradient checkpointing, with images, padding and answers of different lengths."""

from __future__ import annotations

import pytest
import torch

from mmtune.models.label_scoring import (
    Answers,
    _PackedAnswers,
    answer_logprobs_loop,
    answer_logprobs_packed,
    attention_kernel,
    packed_scoring_supported,
)
from mmtune.models.vlm_families import family_names
from tests.models.conftest import build

# Answers of 1 to 4 tokens in the tiny tokenizers (plus the end-of-turn token): blocks of different lengths.
WORDS = ("model.vlm.label_words={image-sarcasm: ảnh, multi-sarcasm: cả hai nữa, not-sarcasm: không có gì đâu, "
         "text-sarcasm: chữ}")


def _batch(classifier, setup, train: bool) -> dict:
    examples = classifier.prepare(setup.posts, train=train)
    # A two-image post first, then captions of different lengths: left padding and several images per prompt.
    multi = [e for e in examples if len(e.post.images) > 1]
    return classifier.collate(multi[:1] + examples[:3], train=train)


@pytest.mark.parametrize(("family", "attention"), [*((family, "sdpa") for family in family_names()),
                                                    ("qwen2-vl", "eager"), ("idefics3", "eager"), ("llava", "eager")])
def test_packed_scores_equal_the_per_label_loop(family, attention, vlm_setup):
    setup = vlm_setup(family, "vlm-generative", WORDS, f"model.vlm.attn_implementation={attention}")
    classifier = build(setup).eval()
    assert attention_kernel(classifier.vlm) == attention
    answers = classifier.answers
    lengths = answers.mask.sum(-1)
    assert len(set(lengths.tolist())) >= 3, lengths  # the answers really are of different lengths
    batch = _batch(classifier, setup, train=False)
    with torch.no_grad():
        packed = answer_logprobs_packed(classifier.vlm, batch, answers)
        looped = answer_logprobs_loop(classifier.vlm, batch, answers)
        first = answer_logprobs_packed(classifier.vlm, batch, answers, first_only=True)
    assert packed.shape == looped.shape == (4, 4, answers.ids.shape[1])
    torch.testing.assert_close(packed, looped, atol=1e-5, rtol=0)
    assert (packed[~answers.mask[None].expand(4, -1, -1)] == 0).all()
    torch.testing.assert_close(first[:, :, 0], looped[:, :, 0], atol=1e-5, rtol=0)
    assert (first[:, :, 1:] == 0).all()


@pytest.mark.parametrize("family", ["qwen2-vl", "smolvlm", "llava"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_packed_gradients_equal_the_per_label_loop(family, checkpointing, vlm_setup):
    setup = vlm_setup(family, "vlm-generative", WORDS, "model.lora.enabled=true", "model.lora.dropout=0.0",
                      f"model.gradient_checkpointing={str(checkpointing).lower()}")
    classifier = build(setup).train()
    batch = _batch(classifier, setup, train=True)
    answers = classifier.answers
    weights = torch.randn(4, 4, answers.ids.shape[1], generator=torch.Generator().manual_seed(0))
    scores, grads = [], []
    for score in (answer_logprobs_packed, answer_logprobs_loop):
        classifier.zero_grad()
        logprobs = score(classifier.vlm, batch, answers)
        (logprobs * weights).sum().backward()
        scores.append(logprobs.detach())
        grads.append({n: p.grad.clone() for n, p in classifier.named_parameters() if p.grad is not None})
    torch.testing.assert_close(scores[0], scores[1], atol=1e-5, rtol=0)
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4, msg=name)


def _forwards(classifier, batch) -> tuple[torch.Tensor, list[dict]]:
    """The classifier's logits and the keyword arguments of each forward of its VLM."""
    calls = []
    hook = classifier.vlm.register_forward_hook(lambda module, args, kwargs, out: calls.append(kwargs),
                                                with_kwargs=True)
    try:
        return classifier(batch), calls
    finally:
        hook.remove()


@pytest.mark.parametrize("training", [True, False])
def test_the_kind_scores_with_one_packed_forward(training, vlm_setup):
    setup = vlm_setup("qwen2.5-vl", "vlm-generative", "model.lora.enabled=true", "model.gradient_checkpointing=true")
    classifier = build(setup).train(training)
    batch = _batch(classifier, setup, train=training)
    with torch.set_grad_enabled(training):
        logits, calls = _forwards(classifier, batch)
    assert len(calls) == 1 and calls[0]["attention_mask"].dim() == 4
    with torch.no_grad():
        looped = answer_logprobs_loop(classifier.vlm, batch, classifier.answers)
    expected = looped.sum(-1) / classifier.answers.mask.sum(-1)
    torch.testing.assert_close(logits.detach(), expected, atol=1e-5, rtol=0)


def test_a_kernel_without_4d_masks_is_refused(vlm_setup):
    classifier = build(vlm_setup("llama")).train()
    batch = _batch(classifier, vlm_setup("llama"), train=True)
    classifier.vlm.config._attn_implementation = "flash_attention_2"
    try:
        assert not packed_scoring_supported(classifier.vlm)
        with pytest.raises(ValueError, match="4D mask.*flash_attention_2"):
            answer_logprobs_packed(classifier.vlm, batch, classifier.answers)
    finally:
        classifier.vlm.config._attn_implementation = "sdpa"


def test_without_4d_masks_the_kind_falls_back_to_the_cache_and_the_loop(vlm_setup, monkeypatch, caplog):
    import mmtune.models.vlm_generative as kind

    monkeypatch.setattr(kind, "packed_scoring_supported", lambda model: False)
    setup = vlm_setup("llama", "vlm-generative", "model.gradient_checkpointing=true")
    classifier = build(setup)
    assert "takes no 4D mask" in caplog.text and "one forward per label" in caplog.text
    batch = _batch(classifier, setup, train=True)
    with torch.no_grad():
        expected = answer_logprobs_packed(classifier.vlm, batch, classifier.answers)
    expected = expected.sum(-1) / classifier.answers.mask.sum(-1)
    # Training under checkpointing: one forward per label; inference: the prompt, then the answers on its cache.
    for training, forwards in ((True, len(classifier.labels)), (False, 2)):
        classifier.train(training)
        with torch.set_grad_enabled(training):
            logits, calls = _forwards(classifier, batch)
        assert len(calls) == forwards
        torch.testing.assert_close(logits.detach(), expected, atol=1e-5, rtol=0)


def test_single_token_answers_need_no_answer_block():
    answers = Answers.from_lists([[5], [6], [7]])
    layout = _PackedAnswers.of(answers, answers.ids.shape[1])
    assert layout.tokens.numel() == 0 and layout.owner.numel() == 0
