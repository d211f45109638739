"""The generative recipes in configs/ run as shipped on tiny models of the same families (one short epoch)."""

from pathlib import Path

import pytest

from mmtune.config import load_config
from mmtune.generative.dpo import run_dpo
from mmtune.generative.sft import run_sft
from mmtune.generative.stages import run_build

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHORT = ["train.epochs=1", "train.batch_size=2", "train.grad_accum=2", "train.log_with=[]"]


def recipe(name: str, out: Path, *overrides: str):
    return load_config(CONFIGS / name, [f"output_dir={out}", *SHORT, *overrides])


def data(files: dict, key: str) -> list[str]:
    return [f"data.train={files[key]}", f"data.train_images={files['images']}", "data.val=null"]


def test_smolvlm_sft_recipe(tiny_parts, colour_chat, tmp_path):
    cfg = recipe("smolvlm-sft.yaml", tmp_path / "run", f"model.name={tiny_parts['smolvlm']}",
                 *data(colour_chat, "chat"))
    assert cfg.model.quantize == "4bit" and cfg.model.lora.enabled and cfg.train.optimizer == "adamw_8bit"
    assert run_sft(cfg) == "finished"
    assert (tmp_path / "run" / "model" / "config.json").is_file()


def test_vlm_dpo_recipe(tiny_parts, colour_chat, tmp_path):
    cfg = recipe("vlm-dpo.yaml", tmp_path / "run", f"model.name={tiny_parts['smolvlm']}", *data(colour_chat, "prefs"))
    assert run_dpo(cfg) == "finished"


@pytest.mark.parametrize("llm", ["vistral", "qwen2"])
def test_build_recipes_stage_1_then_stage_2(llm, tiny_parts, colour_chat, tmp_path):
    # Vistral is a Mistral (LLaMA-shaped) model: the tiny LLaMA stands in for it.
    tiny_llm = tiny_parts["llama" if llm == "vistral" else "qwen2"]
    stage1 = recipe(f"build-siglip-{llm}-stage1.yaml", tmp_path / "s1", f"build.vision={tiny_parts['siglip']}",
                    f"build.llm={tiny_llm}", *data(colour_chat, "captions"))
    assert run_build(stage1) == "finished"
    assert load_config(tmp_path / "s1" / "config.yaml").train.lr == pytest.approx(0.001 * 4 / 256)
    stage2 = recipe(f"build-siglip-{llm}-stage2.yaml", tmp_path / "s2", f"model.name={tmp_path / 's1' / 'model'}",
                    "model.lora.r=4", "model.lora.alpha=8", *data(colour_chat, "chat"), "chat.format=auto")
    assert run_build(stage2) == "finished"
    assert load_config(tmp_path / "s2" / "config.yaml").train.lr == pytest.approx(0.0002 * 4 / 128)
