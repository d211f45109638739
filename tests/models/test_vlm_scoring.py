"""Shared-prompt label scoring equals a full forward per label, for every tiny family."""

from __future__ import annotations

import pytest
import torch

from mmtune.models.label_scoring import Answers, answer_logprobs_cached, answer_logprobs_loop, reduce_scores
from mmtune.models.vlm_families import family_names
from tests.models.conftest import build


@pytest.mark.parametrize("family", family_names())
def test_shared_prompt_scores_equal_the_per_label_loop(family, vlm_setup):
    setup = vlm_setup(family)
    classifier = build(setup).eval()
    examples = classifier.prepare(setup.posts, train=False)
    # Two-image posts and captions of different lengths: left padding and several images per prompt.
    multi = [e for e in examples if len(e.post.images) > 1]
    assert multi, "the demo data has a post with two images"
    chosen = multi[:1] + examples[:3]
    batch = classifier.collate(chosen, train=False)
    answers = classifier.answers
    with torch.no_grad():
        cached = answer_logprobs_cached(classifier.vlm, batch, answers)
        looped = answer_logprobs_loop(classifier.vlm, batch, answers)
        logits = classifier(batch)
    assert cached.shape == (4, 4, answers.ids.shape[1])
    assert (cached - looped).abs().max() <= 1e-4
    assert (cached[:, :, 0] != 0).all() and (cached[~answers.mask[None].expand(4, -1, -1)] == 0).all()
    torch.testing.assert_close(logits, reduce_scores(looped, answers, "mean"), atol=1e-4, rtol=0)


def test_a_post_scores_the_same_alone_and_in_a_padded_batch(vlm_setup):
    setup = vlm_setup("qwen2-vl")
    classifier = build(setup).eval()
    examples = classifier.prepare(setup.posts, train=False)
    with torch.no_grad():
        together = classifier(classifier.collate(examples[:4], train=False))
        alone = classifier(classifier.collate(examples[2:3], train=False))
    torch.testing.assert_close(alone[0], together[2], atol=1e-4, rtol=0)


def test_reductions_normalize_by_answer_length():
    answers = Answers.from_lists([[5], [6, 7, 8]])
    logprobs = torch.tensor([[[-1.0, 0.0, 0.0], [-1.0, -1.0, -1.0]]])
    assert reduce_scores(logprobs, answers, "sum").tolist() == [[-1.0, -3.0]]
    assert reduce_scores(logprobs, answers, "mean").tolist() == [[-1.0, -1.0]]
    assert reduce_scores(logprobs, answers, "first_token").tolist() == [[-1.0, -1.0]]


def test_first_token_scoring_reads_only_the_prompt_forward(vlm_setup):
    # Label words whose first tokens differ: first_token scores are the first answer token's log-probability.
    words = ["model.vlm.label_words={image-sarcasm: ảnh, multi-sarcasm: cả hai, not-sarcasm: không, "
             "text-sarcasm: chữ}", "model.vlm.scoring=first_token"]
    setup = vlm_setup("internvl", "vlm-generative", *words)
    classifier = build(setup).eval()
    batch = classifier.collate(classifier.prepare(setup.posts[:3], train=False), train=False)
    with torch.no_grad():
        logits = classifier(batch)
        full = answer_logprobs_loop(classifier.vlm, batch, classifier.answers)
    torch.testing.assert_close(logits, full[:, :, 0], atol=1e-4, rtol=0)


def test_shared_prompt_gradients_equal_the_per_label_loops(vlm_setup):
    # Training through the shared cache back-propagates into the prompt forward as the full forwards do.
    setup = vlm_setup("qwen2-vl", "vlm-generative", "model.lora.enabled=true", "model.lora.dropout=0.0")
    classifier = build(setup).train()
    batch = classifier.collate(classifier.prepare(setup.posts[:3], train=True), train=True)
    weights = torch.randn(3, 4, classifier.answers.ids.shape[1])
    grads = []
    for score in (answer_logprobs_cached, answer_logprobs_loop):
        classifier.zero_grad()
        (score(classifier.vlm, batch, classifier.answers) * weights).sum().backward()
        grads.append({n: p.grad.clone() for n, p in classifier.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4, msg=name)
