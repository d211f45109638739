"""The over-long row rule with a real tokenizer and chat template (SmolLM2-135M behind a tiny vision tower)."""

from __future__ import annotations

import pytest

from mmtune.errors import InputError
from mmtune.generative.row_length import row_lengths, within_max_length
from mmtune.generative.sft import read_chat_splits
from mmtune.generative.trainer_setup import load_vlm
from tests.generative.conftest import run_config

pytestmark = pytest.mark.real


def test_rows_at_the_longest_length_are_skipped_one_token_under_it(real_llava, real_chat, tmp_path):
    cfg = run_config(real_llava, real_chat["chat"], real_chat["images"], tmp_path / "run")
    model, processor = load_vlm(cfg)
    rows = read_chat_splits(cfg).train
    lengths = row_lengths(rows, processor, cfg)
    assert min(lengths) > model.config.image_seq_length  # every row holds its image tokens and its words
    assert min(lengths) < max(lengths)  # the four colours' answers differ in length with this tokenizer
    limit = max(lengths) - 1
    limited = run_config(real_llava, real_chat["chat"], real_chat["images"], tmp_path / "run",
                         f"chat.max_length={limit}")
    kept = within_max_length(rows, processor, limited)
    assert kept.skipped["too_long"] == lengths.count(max(lengths))
    assert len(kept.rows) == sum(length <= limit for length in lengths)
    image_only = run_config(real_llava, real_chat["chat"], real_chat["images"], tmp_path / "run",
                            f"chat.max_length={model.config.image_seq_length}")
    with pytest.raises(InputError, match="no row fits"):
        within_max_length(rows, processor, image_only)
