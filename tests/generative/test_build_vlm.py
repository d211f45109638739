import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

from mmtune.config import BuildConfig, load_config
from mmtune.errors import InputError
from mmtune.generative.build_vlm import build_llava
from mmtune.generative.stages import run_build
from tests.generative.conftest import read_metrics, run_config


def weights(folder) -> dict[str, torch.Tensor]:
    """The saved weights, in the LLaVA checkpoint layout (vision_tower., multi_modal_projector., language_model.)."""
    return load_file(str(folder / "model.safetensors"))


def changed(before: dict, after: dict) -> set[str]:
    assert set(before) == set(after)
    return {name for name in after if not torch.equal(before[name], after[name])}


@pytest.mark.parametrize(("vision", "llm", "select"), [("siglip", "qwen2", "full"), ("clip", "llama", "default")])
def test_built_model_reloads_with_from_pretrained_keeps_both_parts_and_generates(tiny_parts, tmp_path, vision, llm,
                                                                                  select):
    out = tmp_path / "vlm"
    cfg = load_config(None, [f"output_dir={tmp_path}", "build.stage=0", f"build.vision={tiny_parts[vision]}",
                             f"build.llm={tiny_parts[llm]}"])
    assert run_build(cfg) == "finished"
    out = tmp_path / "model"
    model = AutoModelForImageTextToText.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    assert type(model).__name__ == "LlavaForConditionalGeneration" and type(processor).__name__ == "LlavaProcessor"
    assert model.config.vision_feature_select_strategy == select
    source_vision = AutoModel.from_pretrained(tiny_parts[vision]).vision_model.state_dict()
    for name, value in source_vision.items():
        assert torch.equal(model.model.vision_tower.state_dict()[name], value), name
    source_lm = AutoModelForCausalLM.from_pretrained(tiny_parts[llm])
    lm_state = model.model.language_model.state_dict()
    for name, value in source_lm.model.state_dict().items():
        if name != "embed_tokens.weight":
            assert torch.equal(lm_state[name], value), name
    old_rows = source_lm.model.embed_tokens.weight.shape[0]
    assert torch.equal(lm_state["embed_tokens.weight"][:old_rows], source_lm.model.embed_tokens.weight)
    assert processor.tokenizer.convert_tokens_to_ids("<image>") == model.config.image_token_id >= old_rows
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Ảnh gì đây?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=[Image.new("RGB", (50, 40), (200, 10, 10))], text=[prompt], return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == model.config.image_seq_length
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] > inputs["input_ids"].shape[1]


def test_stage_1_changes_only_the_projector(tiny_llava, colour_chat, tmp_path):
    out = tmp_path / "stage1"
    cfg = run_config(tiny_llava, colour_chat["captions"], colour_chat["images"], out, "build.stage=1",
                     "train.epochs=2")
    assert run_build(cfg) == "finished"
    moved = changed(weights(tiny_llava), weights(out / "model"))
    assert moved and all(name.startswith("multi_modal_projector.") for name in moved)
    assert len(moved) == 4  # linear_1 and linear_2, weight and bias


def test_stage_1_assembles_from_parts_when_no_model_is_named(tiny_parts, colour_chat, tmp_path):
    out = tmp_path / "stage1"
    cfg = run_config(None, colour_chat["captions"], colour_chat["images"], out, "build.stage=1", "train.epochs=1",
                     f"build.vision={tiny_parts['siglip']}", f"build.llm={tiny_parts['qwen2']}")
    assert run_build(cfg) == "finished"
    assert AutoModelForImageTextToText.from_pretrained(out / "model").config.model_type == "llava"


def test_stage_2_changes_the_projector_and_the_language_models_adapted_layers_only(tiny_llava, colour_chat, tmp_path):
    out = tmp_path / "stage2"
    cfg = run_config(tiny_llava, colour_chat["chat"], colour_chat["images"], out, "build.stage=2", "train.epochs=2",
                     "model.lora.enabled=true")
    assert run_build(cfg) == "finished"
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert adapter and all("lora_" in name or "multi_modal_projector" in name for name in adapter)
    assert any("multi_modal_projector" in name for name in adapter)
    moved = changed(weights(tiny_llava), weights(out / "model"))  # adapters merged into the LM's projections
    projector = {name for name in moved if name.startswith("multi_modal_projector.")}
    lm = moved - projector
    assert projector and lm
    assert all(name.startswith("language_model.model.layers.") and
               name.rsplit(".", 2)[-2] in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                           "down_proj") for name in lm)


def test_stage_2_without_lora_trains_projector_and_language_model_but_not_the_vision_tower(tiny_llava, colour_chat,
                                                                                          tmp_path):
    out = tmp_path / "stage2"
    cfg = run_config(tiny_llava, colour_chat["chat"], colour_chat["images"], out, "build.stage=2", "train.epochs=1")
    assert run_build(cfg) == "finished"
    moved = changed(weights(tiny_llava), weights(out / "model"))
    assert {name.split(".")[0] for name in moved} == {"multi_modal_projector", "language_model"}


def test_stage_2_can_train_the_vision_tower_too(tiny_llava, colour_chat, tmp_path):
    out = tmp_path / "stage2"
    cfg = run_config(tiny_llava, colour_chat["chat"], colour_chat["images"], out, "build.stage=2", "train.epochs=1",
                     "model.lora.enabled=true", "build.train_vision_tower=true")
    assert run_build(cfg) == "finished"
    moved = changed(weights(tiny_llava), weights(out / "model"))
    assert any(name.startswith("vision_tower.") for name in moved)


def test_learning_rate_is_rescaled_to_the_effective_batch_and_recorded(tiny_llava, colour_chat, tmp_path):
    out = tmp_path / "stage1"
    cfg = run_config(tiny_llava, colour_chat["captions"], colour_chat["images"], out, "build.stage=1",
                     "train.epochs=1", "train.batch_size=2", "train.grad_accum=2", "train.lr=0.256",
                     "train.reference_batch_size=256", "train.lr_scaling=linear", "train.schedule=constant")
    assert run_build(cfg) == "finished"
    saved = load_config(out / "config.yaml")
    assert saved.train.lr == pytest.approx(0.004)  # 0.256 x (2 x 2) / 256
    assert saved.train.lr_scaling == "none" and saved.train.reference_batch_size == 4
    record = json.loads((out / "learning_rate.json").read_text())
    assert record == {"given": 0.256, "reference_batch": 256, "effective_batch": 4, "rule": "linear",
                      "value": pytest.approx(0.004)}
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [m["learning_rate"] for m in logged if "learning_rate" in m]
    assert rates and all(rate == pytest.approx(0.004) for rate in rates)  # what the optimizer used


def test_square_root_rule(tiny_llava, colour_chat, tmp_path):
    from mmtune.generative.trainer_setup import resolve_learning_rate

    cfg = run_config(tiny_llava, colour_chat["captions"], colour_chat["images"], tmp_path, "train.batch_size=8",
                     "train.grad_accum=4", "train.lr=0.0002", "train.reference_batch_size=128", "train.lr_scaling=sqrt")
    resolved, rate = resolve_learning_rate(cfg)
    assert rate.effective_batch == 32 and resolved.train.lr == pytest.approx(0.0001)


def test_parts_that_cannot_make_a_llava_are_input_errors(tiny_parts, tiny_llava, colour_chat, tmp_path):
    with pytest.raises(InputError, match="patch-based vision transformer"):
        build_llava(BuildConfig(vision=str(tiny_parts["convnext"]), llm=str(tiny_parts["qwen2"])))
    with pytest.raises(InputError, match="build.llm: cannot load"):
        build_llava(BuildConfig(vision=str(tiny_parts["siglip"]), llm=str(tmp_path / "nothing")))
    with pytest.raises(InputError, match="build.vision and build.llm"):
        build_llava(BuildConfig(vision=str(tiny_parts["siglip"])))
    with pytest.raises(InputError, match="LoRA belongs to stage 2"):
        run_build(run_config(tiny_llava, colour_chat["captions"], colour_chat["images"], tmp_path / "r0",
                             "build.stage=1", "model.lora.enabled=true"))
    with pytest.raises(InputError, match="stage 2 starts from a built VLM"):
        run_build(run_config(None, colour_chat["chat"], colour_chat["images"], tmp_path / "r", "build.stage=2"))
    with pytest.raises(InputError, match="model.name: cannot load the VLM"):
        run_build(run_config(tiny_parts["qwen2"], colour_chat["chat"], colour_chat["images"], tmp_path / "r2",
                             "build.stage=1"))
    with pytest.raises(InputError, match="SmolVLMForConditionalGeneration, not a LLaVA-style VLM"):
        run_build(run_config(tiny_parts["smolvlm"], colour_chat["chat"], colour_chat["images"], tmp_path / "r3",
                             "build.stage=2"))


def test_an_embedding_matrix_padded_past_the_tokenizer_is_not_shrunk(tiny_parts, tmp_path):
    from transformers import AutoTokenizer

    padded = tmp_path / "padded-lm"
    lm = AutoModelForCausalLM.from_pretrained(tiny_parts["qwen2"])
    lm.resize_token_embeddings(1100)  # as real checkpoints do, e.g. to a multiple of 64
    lm.save_pretrained(padded)
    AutoTokenizer.from_pretrained(tiny_parts["qwen2"]).save_pretrained(padded)
    built = build_llava(BuildConfig(vision=str(tiny_parts["siglip"]), llm=str(padded)))
    assert built.model.get_input_embeddings().weight.shape[0] == 1100
    assert built.model.config.image_token_id < 1100


def test_a_half_precision_build_trains_its_projector_in_fp32(tiny_parts, colour_chat, tmp_path):
    from mmtune.generative.sft import read_chat_splits, sft_trainer
    from mmtune.generative.stages import PROJECTOR, train_only

    built = build_llava(BuildConfig(vision=str(tiny_parts["siglip"]), llm=str(tiny_parts["qwen2"])),
                        dtype=torch.bfloat16)
    assert {p.dtype for p in built.model.parameters()} == {torch.bfloat16}
    cfg = run_config(None, colour_chat["captions"], colour_chat["images"], tmp_path / "run")
    train_only(built.model, [PROJECTOR])
    trainer = sft_trainer(cfg, built.model, built.processor, read_chat_splits(cfg), tmp_path / "run")
    dtypes = {name.split(".")[1]: p.dtype for name, p in trainer.model.named_parameters()}
    assert dtypes == {"multi_modal_projector": torch.float32, "vision_tower": torch.bfloat16,
                      "language_model": torch.bfloat16}


def test_the_projector_is_drawn_from_the_seed_and_leaves_the_callers_random_stream_alone(tiny_parts):
    build = BuildConfig(vision=str(tiny_parts["siglip"]), llm=str(tiny_parts["qwen2"]))

    def projector(seed):
        return build_llava(build, seed=seed).model.model.multi_modal_projector.state_dict()

    torch.manual_seed(123)
    first = projector(7)
    drawn_after = torch.rand(3)
    torch.manual_seed(123)
    again = projector(7)
    assert torch.equal(torch.rand(3), drawn_after)
    assert all(torch.equal(first[name], again[name]) for name in first)
    other = projector(8)
    assert not torch.equal(first["linear_1.weight"], other["linear_1.weight"])


@pytest.mark.parametrize(("lora", "ratio", "projector_lr"),
                         [("true", "0.1", 0.001), ("false", "0.1", 0.001), ("false", "2", 0.02),
                          ("true", "null", 0.001), ("false", "null", None)])
def test_stage_2_trains_the_projector_at_its_own_learning_rate(tiny_llava, colour_chat, tmp_path, lora, ratio,
                                                               projector_lr):
    """build.projector_lr_ratio, by default LLaVA-1.5's: 0.1 x the adapters' rate with LoRA, the LM's own without."""
    from mmtune.generative.sft import read_chat_splits
    from mmtune.generative.stages import _stage_trainer

    cfg = run_config(tiny_llava, colour_chat["chat"], colour_chat["images"], tmp_path, "build.stage=2",
                     "train.epochs=1", "train.lr=0.01", "train.schedule=constant", f"model.lora.enabled={lora}",
                     f"build.projector_lr_ratio={ratio}")
    _, trainer = _stage_trainer(cfg, read_chat_splits(cfg), tmp_path)
    trainer.train()
    projector = {id(p) for name, p in trainer.model.named_parameters() if "multi_modal_projector" in name.split(".")}
    rates: dict[bool, set[float]] = {}
    for group in trainer.optimizer.param_groups:
        for param in group["params"]:
            rates.setdefault(id(param) in projector, set()).add(round(group["lr"], 9))
    if projector_lr is None:  # one rate for every trained part
        assert set(rates[True]) == set(rates[False]) == {0.01}
    else:
        assert rates == {True: {projector_lr}, False: {0.01}}


@pytest.mark.parametrize(("stage", "data", "extra"),
                         [("1", "captions", ()), ("2", "chat", ("model.lora.enabled=true",))])
def test_a_stage_resumes_from_its_checkpoint(tiny_llava, colour_chat, tmp_path, stage, data, extra):
    out = tmp_path / "stage"
    args = (tiny_llava, colour_chat[data], colour_chat["images"], out, f"build.stage={stage}", "train.epochs=2",
            "train.batch_size=2", *extra)
    assert run_build(run_config(*args, "train.time_budget=0.001")) == "time_budget"
    assert (out / "checkpoint-1").is_dir() and not (out / "model").exists()
    assert run_build(run_config(*args), resume=True) == "finished"
    steps = [m["step"] for m in read_metrics(out) if "loss" in m]
    assert steps == list(range(1, 9))
    assert (out / "model" / "config.json").is_file()
