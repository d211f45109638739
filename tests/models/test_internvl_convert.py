"""InternVL2 chat checkpoints (remote-code `internvl_chat`) converted to transformers' InternVL.

The converted model is checked against the original architecture computed here from the tiny checkpoint's own
tensors, under their original names: InternViT written out (patch conv, class token, positions, fused qkv
attention, layer scales ls1/ls2), the chat model's pixel shuffle (ps_version v2) and `mlp1`, the image-context
tokens replaced by the projected features, and the language model: Qwen2 is transformers' Qwen2ForCausalLM (the
class the chat model itself wraps) on the original `language_model.*` tensors, InternLM2 is written out (fused
grouped `wqkv`, rotary embedding, SwiGLU `w1`/`w3`/`w2`).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch.nn import functional as F  # noqa: N812
from transformers import AutoModelForImageTextToText, Qwen2Config, Qwen2ForCausalLM

from mmtune.config import load_config
from mmtune.errors import InputError
from mmtune.generative.trainer_setup import load_vlm as load_chat_vlm
from mmtune.models.internvl_chat.cache import CACHE_ENV, native_checkpoint
from mmtune.models.internvl_chat.convert import convert
from mmtune.models.vlm_families import load_processor
from mmtune.models.vlm_loading import load_vlm
from mmtune.testing.tiny import make_tiny
from tests.models.test_vlm_runs import rows, vlm_run_config
from tests.training.conftest import run_mmtune, write_config

LAYOUTS = ["internvl-chat", "internvl-chat-internlm2"]


@pytest.fixture(scope="module", params=LAYOUTS)
def checkpoints(request, tmp_path_factory) -> tuple[Path, Path]:
    """(the tiny original checkpoint, its conversion)"""
    root = tmp_path_factory.mktemp(request.param.replace("-", "_"))
    src = make_tiny(request.param, root / "original")
    return src, convert(src, root / "converted")


# ---- the original architecture, from the original tensors ---------------------------------------------------


def intern_vit(w: dict[str, torch.Tensor], vision: dict, pixel_values: torch.Tensor) -> torch.Tensor:
    """InternViT's last hidden state (select_layer -1; it has no final norm)."""
    d, heads = vision["hidden_size"], vision["num_attention_heads"]
    x = F.conv2d(pixel_values, w["vision_model.embeddings.patch_embedding.weight"],
                 w["vision_model.embeddings.patch_embedding.bias"], stride=vision["patch_size"])
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([w["vision_model.embeddings.class_embedding"].expand(len(x), -1, -1), x], dim=1)
    x = x + w["vision_model.embeddings.position_embedding"]
    for i in range(vision["num_hidden_layers"]):
        p = f"vision_model.encoder.layers.{i}."
        h = F.layer_norm(x, (d,), w[p + "norm1.weight"], w[p + "norm1.bias"], vision["layer_norm_eps"])
        qkv = F.linear(h, w[p + "attn.qkv.weight"], w[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(len(x), -1, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        attention = ((q @ k.transpose(-1, -2)) * (d // heads) ** -0.5).softmax(-1) @ v
        attention = F.linear(attention.transpose(1, 2).reshape(x.shape), w[p + "attn.proj.weight"],
                             w[p + "attn.proj.bias"])
        x = x + attention * w[p + "ls1"]
        h = F.layer_norm(x, (d,), w[p + "norm2.weight"], w[p + "norm2.bias"], vision["layer_norm_eps"])
        h = F.linear(F.gelu(F.linear(h, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"])), w[p + "mlp.fc2.weight"],
                     w[p + "mlp.fc2.bias"])
        x = x + h * w[p + "ls2"]
    return x


def pixel_shuffle(x: torch.Tensor, scale_factor: float) -> torch.Tensor:
    """InternVLChatModel.pixel_shuffle with ps_version v2."""
    n, w, h, c = x.size()
    x = x.view(n, w, int(h * scale_factor), int(c / scale_factor))
    x = x.permute(0, 2, 1, 3).contiguous()
    x = x.view(n, int(h * scale_factor), int(w * scale_factor), int(c / (scale_factor * scale_factor)))
    return x.permute(0, 2, 1, 3).contiguous()


def image_embeds(w: dict[str, torch.Tensor], config: dict, pixel_values: torch.Tensor) -> torch.Tensor:
    """InternVLChatModel.extract_feature: drop the class token, shuffle the grid, mlp1."""
    features = intern_vit(w, config["vision_config"], pixel_values)[:, 1:]
    side = int(features.shape[1] ** 0.5)
    features = pixel_shuffle(features.reshape(len(features), side, side, -1), config["downsample_ratio"])
    features = features.reshape(len(features), -1, features.shape[-1])
    h = F.layer_norm(features, features.shape[-1:], w["mlp1.0.weight"], w["mlp1.0.bias"])
    h = F.gelu(F.linear(h, w["mlp1.1.weight"], w["mlp1.1.bias"]))
    return F.linear(h, w["mlp1.3.weight"], w["mlp1.3.bias"])


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def rotary(x: torch.Tensor, theta: float) -> torch.Tensor:
    """The rotary embedding of InternLM2 (rotate_half, positions 0..T-1) on [B, heads, T, head_dim]."""
    dim, length = x.shape[-1], x.shape[-2]
    angles = torch.outer(torch.arange(length).float(), 1.0 / theta ** (torch.arange(0, dim, 2).float() / dim))
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    rotated = torch.cat([-x[..., dim // 2:], x[..., : dim // 2]], -1)
    return x * cos + rotated * sin


def internlm2_logits(w: dict[str, torch.Tensor], llm: dict, embeds: torch.Tensor) -> torch.Tensor:
    d, heads, kv_heads = llm["hidden_size"], llm["num_attention_heads"], llm["num_key_value_heads"]
    head_dim, groups, eps, length = d // heads, heads // kv_heads, llm["rms_norm_eps"], embeds.shape[1]
    causal = torch.full((length, length), -math.inf).triu(1)
    x = embeds
    for i in range(llm["num_hidden_layers"]):
        p = f"language_model.model.layers.{i}."
        h = rms_norm(x, w[p + "attention_norm.weight"], eps)
        # wqkv's output per key/value head: its `groups` query heads, then its key, then its value.
        qkv = F.linear(h, w[p + "attention.wqkv.weight"]).view(len(x), length, kv_heads, groups + 2, head_dim)
        q = qkv[..., :groups, :].reshape(len(x), length, heads, head_dim).transpose(1, 2)
        k, v = (qkv[..., j, :].transpose(1, 2) for j in (-2, -1))
        q, k = rotary(q, llm["rope_theta"]), rotary(k, llm["rope_theta"])
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        attention = ((q @ k.transpose(-1, -2)) / math.sqrt(head_dim) + causal).softmax(-1) @ v
        x = x + F.linear(attention.transpose(1, 2).reshape(x.shape), w[p + "attention.wo.weight"])
        h = rms_norm(x, w[p + "ffn_norm.weight"], eps)
        gate = F.silu(F.linear(h, w[p + "feed_forward.w1.weight"])) * F.linear(h, w[p + "feed_forward.w3.weight"])
        x = x + F.linear(gate, w[p + "feed_forward.w2.weight"])
    return F.linear(rms_norm(x, w["language_model.model.norm.weight"], eps), w["language_model.output.weight"])


def qwen2_logits(w: dict[str, torch.Tensor], llm: dict, embeds: torch.Tensor) -> torch.Tensor:
    keep = {k: v for k, v in llm.items() if k not in ("architectures", "model_type", "attn_implementation")}
    model = Qwen2ForCausalLM(Qwen2Config(**keep, attn_implementation="eager")).eval()
    model.load_state_dict({k.removeprefix("language_model."): v for k, v in w.items()
                           if k.startswith("language_model.")}, strict=True)
    return model(inputs_embeds=embeds).logits


def original_logits(src: Path, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
    """InternVLChatModel.forward: text embeddings with the image-context tokens replaced by the image features."""
    w = load_file(str(src / "model.safetensors"))
    config = json.loads((src / "config.json").read_text())
    embedding = "language_model.model." + ("tok_embeddings" if "internlm2" in config["llm_config"]["model_type"]
                                           else "embed_tokens") + ".weight"
    embeds = w[embedding][input_ids].clone()
    # The original tokenizer's <IMG_CONTEXT> (InternLM2's tokenizer class is remote code: read its file).
    added = json.loads((src / "tokenizer.json").read_text())["added_tokens"]
    context = input_ids == next(token["id"] for token in added if token["content"] == "<IMG_CONTEXT>")
    features = image_embeds(w, config, pixel_values)
    embeds[context] = features.reshape(-1, features.shape[-1])
    lm = internlm2_logits if "internlm2" in config["llm_config"]["model_type"] else qwen2_logits
    return lm(w, config["llm_config"], embeds)


# ---- tests -----------------------------------------------------------------------------------------------------


def chat_batch(processor, image_width: int, tiles: int) -> dict:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (32, image_width, 3), dtype=np.uint8))
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Ảnh này mỉa mai không?"}]}],
        add_generation_prompt=True)
    return processor(text=[prompt], images=[image], return_tensors="pt", crop_to_patches=tiles > 1,
                     max_patches=tiles)


@pytest.mark.parametrize(("image_width", "tiles"), [(40, 1), (64, 4)])
def test_converted_logits_equal_the_original_math(checkpoints, image_width, tiles):
    src, out = checkpoints
    processor = load_processor(str(out))
    model = AutoModelForImageTextToText.from_pretrained(out, attn_implementation="eager").eval()
    batch = chat_batch(processor, image_width, tiles)
    tokens = processor.tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    patches = len(batch["pixel_values"])
    assert patches == (1 if tiles == 1 else 3)  # a wide image: two tiles and the thumbnail
    start = tokens.index("<img>")
    assert tokens[start: start + 2 + 4 * patches] == ["<img>", *["<IMG_CONTEXT>"] * 4 * patches, "</img>"]

    with torch.no_grad():
        w = load_file(str(src / "model.safetensors"))
        config = json.loads((src / "config.json").read_text())
        projected = model.model.get_image_features(pixel_values=batch["pixel_values"]).pooler_output
        torch.testing.assert_close(projected, image_embeds(w, config, batch["pixel_values"]), atol=1e-5, rtol=1e-5)
        logits = model(**batch).logits
        expected = original_logits(src, batch["input_ids"], batch["pixel_values"])
    assert logits.std() > 0.1  # the random weights give logits that a wrong mapping would change
    # The converted vocabulary ends with the `<video>` token the processor needs named (mean-initialised).
    assert logits.shape[-1] == expected.shape[-1] + 1 == len(processor.tokenizer)
    torch.testing.assert_close(logits[..., :-1], expected, atol=1e-4, rtol=1e-4)


def test_converted_folder_has_the_processor_and_config_of_the_original(checkpoints):
    src, out = checkpoints
    original = json.loads((src / "config.json").read_text())
    converted = json.loads((out / "config.json").read_text())
    processor = load_processor(str(out))
    tokenizer = processor.tokenizer
    assert converted["model_type"] == "internvl" and converted["downsample_ratio"] == original["downsample_ratio"]
    assert converted["vision_feature_layer"] == original["select_layer"]
    assert converted["image_token_id"] == tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    assert processor.image_seq_length == converted["image_seq_length"] == 4  # (32 / 8)^2 patches, 2x2 merged
    assert (tokenizer.start_image_token, tokenizer.end_image_token) == ("<img>", "</img>")
    image_processor = processor.image_processor
    assert image_processor.size == {"height": 32, "width": 32}
    assert list(image_processor.image_mean) == [0.485, 0.456, 0.406]
    assert image_processor.max_patches == original["max_dynamic_patch"]
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                       {"type": "text", "text": "x"}]}],
                                         add_generation_prompt=True)
    assert text == "<|im_start|>user\n<IMG_CONTEXT>\nx<|im_end|>\n<|im_start|>assistant\n"
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"][0] == \
        tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_model_name_of_an_original_folder_converts_once_into_the_cache(checkpoints, tmp_path, monkeypatch, caplog):
    src, out = checkpoints
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    with caplog.at_level("INFO", logger="mmtune.models.internvl_chat.cache"):
        first = Path(native_checkpoint(str(src)))
        stamp = (first / "model.safetensors").stat().st_mtime_ns
        assert Path(native_checkpoint(str(src))) == first and (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert first.parent == tmp_path / "cache" and [p.name for p in first.parent.iterdir()] == [first.name]
    assert f"converting it to transformers' InternVL in {first}" in caplog.text
    assert f"using its native conversion in {first}" in caplog.text
    assert load_file(str(first / "model.safetensors")).keys() == load_file(str(out / "model.safetensors")).keys()
    assert native_checkpoint(str(out)) == str(out)  # a native folder is left as it is
    # Other content, other key: a changed checkpoint is converted again.
    changed = tmp_path / "changed"
    shutil.copytree(src, changed)
    config = json.loads((changed / "config.json").read_text())
    (changed / "config.json").write_text(json.dumps({**config, "max_dynamic_patch": 6}))
    assert Path(native_checkpoint(str(changed))) != first


def test_a_hub_id_of_an_original_checkpoint_is_downloaded_without_its_code_and_converted(checkpoints, tmp_path,
                                                                                         monkeypatch):
    src, _ = checkpoints
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    # The Hub cache's layout, as a download of 5CD-AI/Vintern-1B-v2 leaves it (tests run offline).
    repo = tmp_path / "hub" / "models--5CD-AI--Vintern-1B-v2"
    shutil.copytree(src, repo / "snapshots" / "0123abc")
    (repo / "snapshots" / "0123abc" / "modeling_internvl_chat.py").write_text("raise SystemExit('remote code ran')")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    converted = Path(native_checkpoint("5CD-AI/Vintern-1B-v2"))
    assert converted.parent == tmp_path / "cache" and converted.name.startswith("Vintern-1B-v2-")
    assert json.loads((converted / "config.json").read_text())["model_type"] == "internvl"
    assert native_checkpoint("Qwen/not-in-the-cache") == "Qwen/not-in-the-cache"


def test_both_loading_paths_take_an_original_folder_through_the_cache(checkpoints, tmp_path, monkeypatch):
    src, _ = checkpoints
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    cfg = load_config(None, ["model.kind=vlm-generative", f"model.name={src}"])
    loaded = load_vlm(cfg.model)  # the VLM kinds
    assert loaded.family.name == "internvl" and Path(loaded.model.config.name_or_path).parent == tmp_path / "cache"
    model, processor = load_chat_vlm(cfg)  # sft, dpo
    assert type(model).__name__ == "InternVLForConditionalGeneration"
    assert Path(model.config.name_or_path).parent == tmp_path / "cache"
    assert processor.chat_template


def unsupported(src: Path, tmp_path: Path, change: dict) -> Path:
    copy = tmp_path / "unsupported"
    shutil.copytree(src, copy)
    config = json.loads((copy / "config.json").read_text())
    for key, value in change.items():
        section, _, field = key.rpartition(".")
        (config[section] if section else config)[field] = value
    (copy / "config.json").write_text(json.dumps(config))
    return copy


@pytest.mark.parametrize(("change", "message"), [
    ({"llm_config.architectures": ["Phi3ForCausalLM"]}, "its language model is Phi3ForCausalLM, which mmtune does "
                                                        "not convert (supported: Qwen2ForCausalLM"),
    ({"ps_version": "v1"}, "ps_version 'v1' is not supported"),
    ({"template": "phi3-chat"}, "template 'phi3-chat' is not supported"),
])
def test_unsupported_checkpoints_are_input_errors(checkpoints, tmp_path, change, message):
    src, _ = checkpoints
    with pytest.raises(InputError, match=message.replace("(", "\\(")):
        convert(unsupported(src, tmp_path, change), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_errors_are_one_line_exit_2(checkpoints, tmp_path):
    src, out = checkpoints
    phi3 = unsupported(src, tmp_path, {"llm_config.architectures": ["Phi3ForCausalLM"]})
    cases = {(tmp_path / "absent", tmp_path / "a"): "folder not found",
             (src / "config.json", tmp_path / "b"): "not a folder",
             (out, tmp_path / "c"): "no config.json of model type 'internvl_chat'",
             (src, out): "is not empty",
             (phi3, tmp_path / "d"): "its language model is Phi3ForCausalLM"}
    for (source, target), message in cases.items():
        result = run_mmtune("convert", "internvl", source, target)
        assert result.returncode == 2, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.slow
def test_make_tiny_convert_train_and_train_through_the_cache(vlm_demo, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    original, converted = tmp_path / "original", tmp_path / "converted"
    for command in (["make-tiny", "internvl-chat", original], ["convert", "internvl", original, converted]):
        result = run_mmtune(*command)
        assert result.returncode == 0, result.stderr
    runs = {}
    for name, model in (("converted", converted), ("original", original)):
        config = vlm_run_config(vlm_demo, model, tmp_path / name, epochs=1)
        result = run_mmtune("train", write_config(config, tmp_path / f"{name}.yaml"))
        assert result.returncode == 0, result.stderr[-2000:]
        runs[name] = rows(tmp_path / name / "test_predictions.csv")
    assert runs["original"] == runs["converted"]  # the cached conversion is the same model
    assert len(list((tmp_path / "cache").iterdir())) == 1
