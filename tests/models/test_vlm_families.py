"""The VLM family registry: every checkpoint resolves to its family; a vision model of no family exits 2."""

from __future__ import annotations

import json

import pytest
from transformers import AutoConfig, GemmaConfig, LlamaConfig, MistralConfig, PaliGemmaConfig, SiglipVisionConfig

from mmtune.config import load_config
from mmtune.errors import InputError
from mmtune.models.vlm_families import TEXT_LM, VlmFamily, families, family_of, get_family, register_family
from mmtune.models.vlm_loading import load_vlm
from tests.training.conftest import run_mmtune, write_config


def test_each_model_type_belongs_to_one_family():
    types = [model_type for family in families() for model_type in family.model_types]
    assert len(types) == len(set(types))
    assert {"qwen2-vl", "qwen2.5-vl", "internvl", "smolvlm", "idefics3", "llava", "qwen2", "llama"} <= {
        family.name for family in families()}


def test_a_family_registers_once_and_a_model_type_belongs_to_one_family():
    with pytest.raises(ValueError, match="'llava' is registered twice \\(its name\\)"):
        register_family(VlmFamily(name="llava", model_types=("other",), has_vision=True))
    with pytest.raises(ValueError, match="model type 'qwen2_vl' of 'qwen2-vl'"):
        register_family(VlmFamily(name="qwen2-vl-copy", model_types=("qwen2_vl",), has_vision=True))


@pytest.mark.parametrize("family", [family.name for family in families()])
def test_a_tiny_checkpoint_resolves_to_its_family(family, tiny_vlm):
    folder = str(tiny_vlm(family))
    assert family_of(AutoConfig.from_pretrained(folder), folder) is get_family(family)


def test_a_text_only_lm_of_no_family_loads_as_a_causal_lm():
    assert family_of(MistralConfig(), "some/mistral") is TEXT_LM


def unregistered_vlm(folder):
    """A PaliGemma config (a vision model no family covers); only config.json, which is all resolution reads."""
    PaliGemmaConfig(vision_config=SiglipVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2),
                    text_config=GemmaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
                    ).save_pretrained(folder)
    return folder


def test_a_vision_model_of_no_family_is_an_input_error_naming_model_name(tmp_path):
    folder = unregistered_vlm(tmp_path / "paligemma")
    cfg = load_config(None, ["model.kind=vlm-generative", f"model.name={folder}"])
    with pytest.raises(InputError, match=r"model\.name: .*paligemma.* type 'paligemma', whose family mmtune "
                                         r"does not support \(supported: .*qwen2-vl"):
        load_vlm(cfg.model)


def test_a_vision_part_is_found_by_its_config_keys(tmp_path):
    # Phi-3.5-vision's layout: a phi3 text config with an `img_processor` (it would load as a text-only Phi-3).
    folder = tmp_path / "phi-3.5-vision"
    folder.mkdir()
    config = {**MistralConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).to_dict(),
              "model_type": "phi3", "architectures": ["Phi3VForCausalLM"],
              "img_processor": {"image_dim_out": 1024, "model_name": "openai/clip-vit-large-patch14-336"}}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(InputError, match="type 'phi3', whose family mmtune does not support"):
        family_of(AutoConfig.from_pretrained(folder), str(folder))


def test_internvl_in_its_remote_code_format_is_an_input_error():
    config = MistralConfig()
    config.model_type = "internvl_chat"
    with pytest.raises(InputError, match="InternVL2 \\(Vintern-1B\\)'s remote-code format"):
        family_of(config, "5CD-AI/Vintern-1B")


def test_training_a_vision_model_of_no_family_exits_2(vlm_demo, tmp_path):
    folder = unregistered_vlm(tmp_path / "paligemma")
    config = {"output_dir": str(tmp_path / "run"),
              "data": {"train": str(vlm_demo.train), "train_images": str(vlm_demo.train_images)},
              "model": {"kind": "vlm-head", "name": str(folder)}, "train": {"epochs": 1}}
    result = run_mmtune("train", write_config(config, tmp_path / "c.yaml"))
    assert result.returncode == 2, result.stderr
    assert "model.name:" in result.stderr and "whose family mmtune does not support" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_text_only_familys_type_with_a_vision_part_is_an_input_error():
    # Registering a text-only family must not let its vision variants (same model type) load without images.
    config = LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    config.img_processor = {"image_dim_out": 1024}
    with pytest.raises(InputError, match="type 'llama', whose family mmtune does not support"):
        family_of(config, "a/llama-vision")
