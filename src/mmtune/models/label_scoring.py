"""Class scores of a generative (V)LM: the log-likelihood of each label's answer tokens after the prompt.

Shared-prompt scoring (`answer_logprobs_cached`): one forward over the left-padded prompts and their images
keeps the key/value cache and the logits of the last prompt position only; the cache is repeated K times and
one forward over the K answers (all but their last token) scores the rest. The language-model head runs only
at those positions (`logits_to_keep`), never over every position and the whole vocabulary.

`answer_logprobs_loop` is the plain alternative: one full forward of prompt + answer per label. It is the
reference the tests and benchmarks/label_scoring.py compare against, and the training path under gradient
checkpointing, where transformers turns the cache off. `answer_loss` is the `lm` objective (instruction
tuning): cross-entropy on the gold answer tokens only.

Positions: prompts are left-padded, and a forward without position ids numbers them 0..P-1 pads included
(rotary embeddings depend on differences only, so the pads' offset does not change any score). Answers
continue at P, P+1, ... Families with `rope_deltas` (Qwen2-VL) number positions in three rows from the images'
grid and keep the shift to plain numbering in `model.model.rope_deltas`, which the continuation must add.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from mmtune.models.vlm_families import family_of

# Per-token tensors of a prompt batch, and what an appended answer token gets in them.
PER_TOKEN = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


@dataclass
class Answers:
    """The K labels' answer ids, right-padded: ids [K, L], mask [K, L] (True on real tokens)."""

    ids: torch.Tensor
    mask: torch.Tensor

    @classmethod
    def from_lists(cls, answers: list[list[int]]) -> Answers:
        longest = max(len(a) for a in answers)
        ids = torch.zeros(len(answers), longest, dtype=torch.long)
        mask = torch.zeros(len(answers), longest, dtype=torch.bool)
        for k, answer in enumerate(answers):
            ids[k, : len(answer)] = torch.tensor(answer)
            mask[k, : len(answer)] = True
        return cls(ids, mask)


def answer_logprobs_cached(model: nn.Module, prompt: dict[str, torch.Tensor], answers: Answers,
                           first_only: bool = False) -> torch.Tensor:
    """[B, K, L] log-probabilities of every answer token (0 on padding), from one shared prompt forward."""
    input_ids = prompt["input_ids"]
    batch = input_ids.shape[0]
    labels, answer_length = answers.ids.shape
    _reset_rope_deltas(model)
    out = model(**prompt, use_cache=True, logits_to_keep=1)
    first = out.logits[:, -1].float().log_softmax(-1)  # [B, V]
    logprobs = input_ids.new_zeros((batch, labels, answer_length), dtype=torch.float32)
    logprobs[:, :, 0] = first[:, answers.ids[:, 0]]
    if answer_length == 1 or first_only:
        return logprobs
    cache = out.cache
    cache.batch_repeat_interleave(labels)  # row b*K + k continues prompt b with label k
    continuation = answers.ids[:, :-1].repeat(batch, 1)  # [B*K, L-1]
    attention = torch.cat([prompt["attention_mask"].repeat_interleave(labels, 0),
                           answers.mask[:, :-1].repeat(batch, 1).to(prompt["attention_mask"].dtype)], dim=1)
    rest = model(input_ids=continuation, attention_mask=attention, cache=cache, use_cache=True,
                 position_ids=_continuation_positions(model, prompt["attention_mask"], answer_length - 1, labels))
    targets = answers.ids[:, 1:].repeat(batch, 1)
    tail = rest.logits.float().log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
    logprobs[:, :, 1:] = tail.view(batch, labels, answer_length - 1)
    return logprobs * answers.mask[None]


def answer_logprobs_loop(model: nn.Module, prompt: dict[str, torch.Tensor], answers: Answers,
                         every_position: bool = False) -> torch.Tensor:
    """[B, K, L] as `answer_logprobs_cached`, with one full forward of prompt + answer per label.

    `every_position` runs the language-model head over the whole sequence, as a plain loop over
    `model(...).logits` does (the benchmark's baseline); the scores are the same.
    """
    batch = prompt["input_ids"].shape[0]
    labels, answer_length = answers.ids.shape
    logprobs = prompt["input_ids"].new_zeros((batch, labels, answer_length), dtype=torch.float32)
    for k in range(labels):
        ids = answers.ids[k][answers.mask[k]]
        tokens = ids[None].expand(batch, -1)
        logits = _forward_with_answer(model, prompt, tokens, torch.ones_like(tokens, dtype=torch.bool),
                                      every_position)
        logprobs[:, k, : len(ids)] = logits.float().log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)
    return logprobs


def answer_loss(model: nn.Module, prompt: dict[str, torch.Tensor], answers: Answers,
                targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each post's gold answer tokens (targets: [B] label indices) after its prompt."""
    ids, mask = answers.ids[targets], answers.mask[targets]  # [B, L]
    logits = _forward_with_answer(model, prompt, ids, mask)
    return nn.functional.cross_entropy(logits.float()[mask], ids[mask])


def reduce_scores(logprobs: torch.Tensor, answers: Answers, scoring: Literal["mean", "sum", "first_token"]
                  ) -> torch.Tensor:
    """[B, K] class logits from [B, K, L] token log-probabilities."""
    if scoring == "first_token":
        return logprobs[:, :, 0]
    total = logprobs.sum(-1)
    return total / answers.mask.sum(-1).to(total.dtype) if scoring == "mean" else total


def _forward_with_answer(model: nn.Module, prompt: dict[str, torch.Tensor], answer: torch.Tensor,
                         mask: torch.Tensor, every_position: bool = False) -> torch.Tensor:
    """Logits predicting each answer token ([B, L, V]): the prompt with `answer` appended, head at those L."""
    length = prompt["input_ids"].shape[1]
    inputs: dict[str, Any] = dict(prompt)
    for key in PER_TOKEN:
        if key in inputs:
            extra = {"input_ids": answer, "attention_mask": mask}.get(key, torch.zeros_like(answer))
            inputs[key] = torch.cat([inputs[key], extra.to(inputs[key].dtype)], dim=1)
    _reset_rope_deltas(model)
    positions = torch.arange(length - 1, length - 1 + answer.shape[1], device=answer.device)
    if every_position:
        return model(**inputs, use_cache=False).logits[:, positions]
    return model(**inputs, use_cache=False, logits_to_keep=positions).logits


def _continuation_positions(model: nn.Module, prompt_mask: torch.Tensor, steps: int, labels: int) -> torch.Tensor:
    batch, length = prompt_mask.shape
    steps_range = torch.arange(steps, device=prompt_mask.device)[None]
    deltas = model.model.rope_deltas if _has_rope_deltas(model) else None
    if deltas is None:
        return (length + steps_range).expand(batch * labels, -1)
    # Qwen2-VL / Qwen2.5-VL after a prompt with images: numbered over real tokens only, then shifted.
    real = prompt_mask.sum(1, keepdim=True) + deltas.to(prompt_mask.device)
    return (real + steps_range).repeat_interleave(labels, 0)


def _reset_rope_deltas(model: nn.Module) -> None:
    # Qwen2-VL keeps the last prompt's shifts on the module; a text-only prompt would not replace them.
    if _has_rope_deltas(model):
        model.model.rope_deltas = None


def _has_rope_deltas(model: nn.Module) -> bool:
    return family_of(model.config, model.config.name_or_path).rope_deltas
