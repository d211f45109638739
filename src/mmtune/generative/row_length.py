"""Rows longer than `chat.max_length` tokens (image tokens included) are bad rows, found before training.

Why not TRL's truncation: its collators cut every sequence at max_length from the end, after the images have
been expanded into their tokens. A row over the limit loses its answer (a row trained on half an answer, or on
none), and one whose prompt alone is over it loses image tokens, which the model then cannot match with its
image features (a crash minutes into the run, or, for some families, images read from the wrong positions).
So each row is measured once with TRL's own collator for the trainer (truncation off): a row over the limit is
skipped and counted as `too_long` (with `data.on_bad_row: error`, the first one stops the run, named), and what
reaches the trainer is never cut.
"""

from __future__ import annotations

import logging
from typing import Any

from mmtune.config import Config
from mmtune.errors import InputError
from mmtune.generative.chat_data import ChatRows
from mmtune.generative.trainer_setup import with_images
from mmtune.progress import progress

log = logging.getLogger(__name__)

TOO_LONG = "too_long"
_BATCH = 16  # rows measured per collator call


def within_max_length(rows: ChatRows, processor: Any, cfg: Config, preference: bool = False) -> ChatRows:
    """`rows` without those over `chat.max_length` tokens (counted in `skipped` as too_long); unchanged when the
    limit is off (null)."""
    limit = cfg.chat.max_length
    if limit is None:
        return rows
    lengths = row_lengths(rows, processor, cfg, preference)
    kept = ChatRows(rows=[], layout=rows.layout, skipped=rows.skipped.copy(), path=rows.path, sources=[])
    sources = rows.sources if len(rows.sources) == len(rows.rows) else [f"row {i}" for i in range(len(rows.rows))]
    for row, source, length in zip(rows.rows, sources, lengths):
        if length <= limit:
            kept.rows.append(row)
            kept.sources.append(source)
            continue
        if cfg.data.on_bad_row == "error":
            raise InputError(f"{rows.path} {source}: {length} tokens with its images, over chat.max_length={limit}; "
                             "it would be cut (its answer, or inside its image tokens): raise chat.max_length, "
                             "shorten the row, or skip such rows with data.on_bad_row: skip")
        kept.skipped[TOO_LONG] += 1
    too_long = kept.skipped[TOO_LONG] - rows.skipped[TOO_LONG]
    if too_long:
        log.warning(f"{rows.path}: skipped {too_long} of {len(rows.rows)} rows over chat.max_length={limit} tokens "
                    f"(too_long; the longest has {max(lengths)}), rather than cut their answer or image tokens")
    if not kept.rows:
        raise InputError(f"{rows.path}: no row fits chat.max_length={limit} tokens (the shortest has "
                         f"{min(lengths)} with its images); raise chat.max_length")
    return kept


def row_lengths(rows: ChatRows, processor: Any, cfg: Config, preference: bool = False) -> list[int]:
    """Each row's tokens as the trainer's collator builds them (images expanded; for preference rows the longer
    of prompt+chosen and prompt+rejected), read by `train.num_workers` loader processes as in training."""
    from datasets import Dataset
    from torch.utils.data import DataLoader

    dataset = with_images(Dataset.from_list(rows.rows), cfg.data.image.max_pixels, cfg.model.vlm.image_size,
                          cfg.data.image.max_bytes)
    loader = DataLoader(dataset, batch_size=_BATCH, num_workers=cfg.train.num_workers,
                        collate_fn=_Lengths(_collator(processor, preference), preference))
    lengths: list[int] = []
    with progress(len(rows.rows), "measuring rows", unit="row", delay=3.0) as bar:
        for batch in loader:
            lengths += batch
            bar.update(len(batch))
    return lengths


class _Lengths:
    """A loader's collate function: the batch's row lengths only (its pixels stay in the worker)."""

    def __init__(self, collator: Any, preference: bool) -> None:
        self.collator, self.preference = collator, preference

    def __call__(self, examples: list[dict[str, Any]]) -> list[int]:
        per_sequence = self.collator(examples)["attention_mask"].sum(dim=1).tolist()
        n = len(examples)
        return [max(per_sequence[i], per_sequence[i + n]) for i in range(n)] if self.preference else per_sequence


def _collator(processor: Any, preference: bool) -> Any:
    if preference:
        from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

        return DataCollatorForVisionPreference(processor=processor, max_length=None)
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    return DataCollatorForVisionLanguageModeling(processor=processor, max_length=None, completion_only_loss=True)
