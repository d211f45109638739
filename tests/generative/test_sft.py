import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from mmtune.errors import InputError
from mmtune.generative.sft import read_chat_splits, run_sft, sft_trainer
from mmtune.generative.trainer_setup import load_vlm
from tests.generative.conftest import read_metrics, run_config


def test_only_answer_tokens_are_trained_never_prompt_or_image_tokens(tiny_llava, colour_chat, tmp_path):
    cfg = run_config(tiny_llava, colour_chat["chat"], colour_chat["images"], tmp_path / "run")
    model, processor = load_vlm(cfg)
    splits = read_chat_splits(cfg)
    trainer = sft_trainer(cfg, model, processor, splits, tmp_path / "run")
    rows = [trainer.train_dataset[i] for i in range(4)]
    batch = trainer.data_collator(rows)
    image_id = model.config.image_token_id
    tokenizer = processor.tokenizer
    for index, row in enumerate(rows):
        ids, labels, mask = batch["input_ids"][index], batch["labels"][index], batch["attention_mask"][index]
        trained = labels != -100
        assert (ids[mask.bool()] == image_id).sum() == model.config.image_seq_length  # the image is in the input
        assert not (ids[trained] == image_id).any()
        assert torch.equal(labels[trained], ids[trained])
        answer = row["completion"][0]["content"][0]["text"]
        assert tokenizer.decode(ids[trained], skip_special_tokens=True).strip() == answer
        # Everything before the first trained token is prompt: "USER: <image> Màu gì?\nASSISTANT:".
        first = int(trained.nonzero()[0])
        assert "Màu gì?" in tokenizer.decode(ids[:first]) and not trained[:first].any()


def test_sft_lowers_the_answer_loss_records_eval_loss_and_saves_a_loadable_model(tiny_llava, colour_chat, tmp_path):
    out = tmp_path / "run"
    cfg = run_config(tiny_llava, colour_chat["chat"], colour_chat["images"], out, "train.epochs=6",
                     f"data.val={colour_chat['chat']}")
    assert run_sft(cfg) == "finished"
    metrics = read_metrics(out)
    losses = [m["loss"] for m in metrics if "loss" in m]
    evals = [m["eval_loss"] for m in metrics if "eval_loss" in m]
    assert len(evals) == 6 and evals[-1] < evals[0] - 0.5
    assert sum(losses[-2:]) < sum(losses[:2]) - 1.0
    model = AutoModelForImageTextToText.from_pretrained(out / "model")
    processor = AutoProcessor.from_pretrained(out / "model")
    prompt = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                             {"type": "text", "text": "Màu gì?"}]}], add_generation_prompt=True)
    from PIL import Image

    inputs = processor(images=[Image.new("RGB", (40, 30), (220, 20, 20))], text=[prompt], return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    # Every answer starts with "màu": after a few epochs greedy decoding starts the same way.
    answer_start = processor.tokenizer(" màu đỏ", add_special_tokens=False)["input_ids"][0]
    assert int(generated[0]) == answer_start


def test_lora_with_gradient_checkpointing_trains_language_model_adapters_only(tiny_llava, colour_chat, tmp_path):
    out = tmp_path / "run"
    cfg = run_config(tiny_llava, colour_chat["chat"], colour_chat["images"], out, "model.lora.enabled=true",
                     "model.gradient_checkpointing=true", "train.epochs=1")
    model, processor = load_vlm(cfg)
    from mmtune.generative.trainer_setup import lora_config

    trainer = sft_trainer(cfg, model, processor, read_chat_splits(cfg), out, lora_config(cfg, model))
    trainable = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name and "language_model" in name for name in trainable)
    trainer.train()
    assert trainer.model.base_model.model.model.language_model.is_gradient_checkpointing
    assert trainer.state.log_history[0]["loss"] > 0


def test_time_budget_stops_with_a_checkpoint_and_resume_finishes_the_run(tiny_llava, colour_chat, tmp_path):
    out = tmp_path / "run"
    args = (tiny_llava, colour_chat["chat"], colour_chat["images"], out, "train.epochs=2", "train.batch_size=2")
    assert run_sft(run_config(*args, "train.time_budget=0.001")) == "time_budget"
    assert (out / "checkpoint-1").is_dir() and not (out / "model").exists()
    with pytest.raises(InputError, match="already holds a run"):
        run_sft(run_config(*args))
    with pytest.raises(InputError, match="config changed"):
        run_sft(run_config(*args, "train.lr=0.1"), resume=True)
    assert run_sft(run_config(*args), resume=True) == "finished"
    steps = [m["step"] for m in read_metrics(out) if "loss" in m]
    assert steps == list(range(1, 9))  # 8 rows / 2 per step x 2 epochs, each step once
    assert (out / "model" / "config.json").is_file()


def test_resume_without_checkpoint_and_quantize_without_lora_are_input_errors(tiny_llava, colour_chat, tmp_path):
    args = (tiny_llava, colour_chat["chat"], colour_chat["images"], tmp_path / "run")
    with pytest.raises(InputError, match="no checkpoint"):
        run_sft(run_config(*args), resume=True)
    with pytest.raises(InputError, match="set model.lora.enabled"):
        run_sft(run_config(*args, "model.quantize=4bit"))


def test_qlora_sft_runs_on_a_4bit_base_and_exports_a_full_precision_model(tiny_llava, colour_chat, tmp_path):
    out = tmp_path / "run"
    cfg = run_config(tiny_llava, colour_chat["chat"], colour_chat["images"], out, "model.lora.enabled=true",
                     "model.quantize=4bit", "train.epochs=1")
    assert run_sft(cfg) == "finished"
    model = AutoModelForImageTextToText.from_pretrained(out / "model")
    assert model.dtype == torch.float32 and not getattr(model, "is_loaded_in_4bit", False)
    assert (out / "adapter" / "adapter_config.json").is_file()


@pytest.mark.parametrize("family", ["smolvlm", "qwen2-vl", "internvl", "llava"])
def test_sft_with_lora_trains_each_vlm_family_on_answers_only(family, colour_chat, tmp_path):
    from mmtune.testing.tiny import make_tiny

    folder = make_tiny(family, tmp_path / family)
    out = tmp_path / "run"
    cfg = run_config(folder, colour_chat["chat"], colour_chat["images"], out, "train.epochs=2",
                     "model.lora.enabled=true", "train.lr=0.01")
    model, processor = load_vlm(cfg)
    trainer = sft_trainer(cfg, model, processor, read_chat_splits(cfg), out)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    trained = batch["labels"] != -100
    answers = processor.tokenizer.batch_decode(
        [ids[mask] for ids, mask in zip(batch["input_ids"], trained)], skip_special_tokens=True)
    # The answer and its end-of-turn token (which InternVL's tokenizer does not mark special), nothing else.
    for answer, expected in zip(answers, ["màu đỏ", "màu xanh"]):
        assert answer.strip().startswith(expected) and "gì" not in answer
    assert run_sft(cfg) == "finished"
    losses = [m["loss"] for m in read_metrics(out) if "loss" in m]
    assert losses[-1] < losses[0]
    AutoModelForImageTextToText.from_pretrained(out / "model")


def test_multi_image_sharegpt_rows_train(tiny_llava, tmp_path):
    import json

    from tests.generative.conftest import write_images

    pairs = write_images(tmp_path / "images", 4)
    rows = [{"id": i, "image": [pairs[i][0], pairs[i + 1][0]], "conversations": [
        {"from": "human", "value": "Ảnh 1: <image>\nẢnh 2: <image>\nHai màu gì?"},
        {"from": "gpt", "value": f"{pairs[i][1]} và {pairs[i + 1][1]}"}]} for i in range(3)]
    (tmp_path / "multi.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    cfg = run_config(tiny_llava, tmp_path / "multi.json", tmp_path / "images", tmp_path / "run", "train.batch_size=3")
    model, processor = load_vlm(cfg)
    trainer = sft_trainer(cfg, model, processor, read_chat_splits(cfg), tmp_path / "run")
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    assert batch["pixel_values"].shape[0] == 6
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == 6 * model.config.image_seq_length
    assert run_sft(cfg) == "finished"


def test_a_misspelt_lora_target_is_bad_input_not_dropped(tiny_llava, colour_chat, tmp_path):
    from mmtune.generative.trainer_setup import lora_config

    cfg = run_config(tiny_llava, colour_chat["chat"], colour_chat["images"], tmp_path / "run",
                     "model.lora.enabled=true", "model.lora.targets=[q_proj,v_prj]")
    model, _ = load_vlm(cfg)
    with pytest.raises(InputError, match=r"model\.lora\.targets: 'v_prj' is not a linear layer"):
        lora_config(cfg, model)
    only_q = run_config(tiny_llava, colour_chat["chat"], colour_chat["images"], tmp_path / "run",
                        "model.lora.enabled=true", "model.lora.targets=[q_proj]")
    targets = lora_config(only_q, model).target_modules
    assert targets and all("language_model" in name and name.endswith("q_proj") for name in targets)
