"""Rows over chat.max_length (image tokens included) are skipped and counted as too_long, never cut by TRL."""

from __future__ import annotations

import logging

import pytest

from mmtune.errors import InputError
from mmtune.generative.dpo import dpo_trainer
from mmtune.generative.row_length import row_lengths, within_max_length
from mmtune.generative.sft import read_chat_splits, sft_trainer
from mmtune.generative.trainer_setup import load_vlm
from tests.generative.conftest import run_config, write_images, write_jsonl

LONG_ANSWER = " ".join(["màu đỏ rất đẹp"] * 12)


@pytest.fixture
def mixed_chat(tmp_path):
    """8 rows: even ones with a short answer, odd ones with an answer about 60 tokens long."""
    images = tmp_path / "images"
    pairs = write_images(images, 8)
    chat = [{"images": [name], "messages": [{"role": "user", "content": "Màu gì?"},
                                            {"role": "assistant", "content": LONG_ANSWER if i % 2 else f"màu {c}"}]}
            for i, (name, c) in enumerate(pairs)]
    prefs = [{"images": [name], "prompt": "Màu gì?", "chosen": LONG_ANSWER if i % 2 else f"màu {c}",
              "rejected": "không biết"} for i, (name, c) in enumerate(pairs)]
    return {"images": images, "chat": write_jsonl(tmp_path / "chat.jsonl", chat),
            "prefs": write_jsonl(tmp_path / "prefs.jsonl", prefs)}


def test_rows_over_the_limit_are_counted_and_the_rest_reach_the_trainer_whole(tiny_llava, mixed_chat, tmp_path,
                                                                               caplog):
    probe = run_config(tiny_llava, mixed_chat["chat"], mixed_chat["images"], tmp_path / "probe")
    model, processor = load_vlm(probe)
    lengths = row_lengths(read_chat_splits(probe).train, processor, probe)
    short, long = max(lengths[0::2]), min(lengths[1::2])
    assert short < long
    cfg = run_config(tiny_llava, mixed_chat["chat"], mixed_chat["images"], tmp_path / "run",
                     f"chat.max_length={short}")
    with caplog.at_level(logging.WARNING):
        trainer = sft_trainer(cfg, model, processor, read_chat_splits(cfg), tmp_path / "run")
    assert len(trainer.train_dataset) == 4
    assert "skipped 4 of 8 rows over chat.max_length" in caplog.text and "too_long" in caplog.text
    rows = [trainer.train_dataset[i] for i in range(4)]
    answers = [row["completion"][0]["content"][0]["text"] for row in rows]
    batch = trainer.data_collator(rows)
    image_id = model.config.image_token_id
    for index, answer in enumerate(answers):
        ids, labels, mask = batch["input_ids"][index], batch["labels"][index], batch["attention_mask"][index]
        assert int(mask.sum()) <= short
        assert (ids[mask.bool()] == image_id).sum() == model.config.image_seq_length  # every image token kept
        trained = ids[labels != -100]
        assert processor.tokenizer.decode(trained, skip_special_tokens=True).strip() == answer  # the whole answer


def test_the_counts_the_error_and_the_limit_off(tiny_llava, mixed_chat, tmp_path):
    cfg = run_config(tiny_llava, mixed_chat["chat"], mixed_chat["images"], tmp_path / "run")
    model, processor = load_vlm(cfg)
    rows = read_chat_splits(cfg).train
    lengths = row_lengths(rows, processor, cfg)
    workers = run_config(tiny_llava, mixed_chat["chat"], mixed_chat["images"], tmp_path / "run", "train.num_workers=2")
    assert row_lengths(rows, processor, workers) == lengths  # loader processes measure the same, in order
    short = max(lengths[0::2])
    limited = run_config(tiny_llava, mixed_chat["chat"], mixed_chat["images"], tmp_path / "run",
                         f"chat.max_length={short}")
    kept = within_max_length(rows, processor, limited)
    assert kept.skipped["too_long"] == 4 and kept.sources == ["line 1", "line 3", "line 5", "line 7"]
    strict = run_config(tiny_llava, mixed_chat["chat"], mixed_chat["images"], tmp_path / "run",
                        f"chat.max_length={short}", "data.on_bad_row=error")
    with pytest.raises(InputError, match=rf"chat.jsonl line 2: {lengths[1]} tokens with its images, over "
                                         rf"chat.max_length={short}"):
        within_max_length(rows, processor, strict)
    # A prompt whose image tokens alone pass the limit: no row is left, and none is cut into.
    tiny = run_config(tiny_llava, mixed_chat["chat"], mixed_chat["images"], tmp_path / "run",
                      f"chat.max_length={model.config.image_seq_length}")
    with pytest.raises(InputError, match="no row fits chat.max_length"):
        within_max_length(rows, processor, tiny)
    off = run_config(tiny_llava, mixed_chat["chat"], mixed_chat["images"], tmp_path / "run", "chat.max_length=null")
    assert within_max_length(rows, processor, off) is rows


def test_dpo_measures_the_longer_of_chosen_and_rejected(tiny_llava, mixed_chat, tmp_path):
    probe = run_config(tiny_llava, mixed_chat["prefs"], mixed_chat["images"], tmp_path / "probe")
    model, processor = load_vlm(probe)
    prefs = read_chat_splits(probe, preference=True).train
    lengths = row_lengths(prefs, processor, probe, preference=True)
    short = max(lengths[0::2])
    assert short < min(lengths[1::2])
    cfg = run_config(tiny_llava, mixed_chat["prefs"], mixed_chat["images"], tmp_path / "run",
                     f"chat.max_length={short}")
    trainer = dpo_trainer(cfg, model, processor, read_chat_splits(cfg, preference=True), tmp_path / "run")
    assert len(trainer.train_dataset) == 4
    assert all(row["chosen"][0]["content"][0]["text"] != LONG_ANSWER
               for row in (trainer.train_dataset[i] for i in range(4)))
