"""Class scores of a generative (V)LM: the log-likelihood of each label's answer tokens after the prompt.

Shared-prompt scoring (`answer_logprobs_cached`): one forward over the left-padded prompts and their images
keeps the key/value cache and the logits of the last prompt position only; the cache is repeated K times and
one forward over the K answers (all but their last token) scores the rest. The language-model head runs only
at those positions (`logits_to_keep`), never over every position and the whole vocabulary.

Packed scoring (`answer_logprobs_packed`): one sequence per post, the prompt once and then the K answers (all
but their last token) one after another, under a 4D attention mask in which each answer token sees the
prompt's real tokens and the earlier tokens of its own answer, never another answer; every answer's positions
restart where the prompt ends. One forward, no cache, so it works under gradient checkpointing (where
transformers turns the cache off) and trains a step with one forward and one backward. It is what the kind
runs, in training and in inference (faster than the shared cache on every family, benchmarks/RESULTS.md);
the shared cache stays for attention kernels that take no 4D mask.

`answer_logprobs_loop` is the plain alternative: one full forward of prompt + answer per label. It is the
reference the tests and benchmarks/label_scoring.py compare against, and the training path under gradient
checkpointing when the attention kernel cannot take a custom 4D mask. `answer_loss` is the `lm` objective
(instruction tuning): cross-entropy on the gold answer tokens only.

Positions: prompts are left-padded, and a forward without position ids numbers them 0..P-1 pads included
(rotary embeddings depend on differences only, so the pads' offset does not change any score). Answers
continue at P, P+1, ... (each packed answer restarts there). Families with `rope_deltas` (Qwen2-VL) number
positions in three rows from the images' grid and keep the shift to plain numbering in `model.model.rope_deltas`,
which the continuation must add (packed scoring asks `get_rope_index` for the prompt's and continues after them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from mmtune.models.vlm_families import family_of

# Per-token tensors of a prompt batch, and what an appended answer token gets in them.
PER_TOKEN = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")
# Attention kernels that apply a custom 4D mask as given: sdpa takes a boolean one, eager adds a float one.
# flash-attention kernels read only a 2D padding mask, flex attention a BlockMask.
MASKED_KERNELS = ("sdpa", "eager")
# The images' grid arguments of Qwen2-VL's `get_rope_index`.
GRID_KEYS = ("image_grid_thw", "video_grid_thw", "second_per_grid_ts")


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


def answer_logprobs_packed(model: nn.Module, prompt: dict[str, torch.Tensor], answers: Answers,
                           first_only: bool = False) -> torch.Tensor:
    """[B, K, L] as `answer_logprobs_cached`, from one forward over each prompt followed by the K answers."""
    kernel = attention_kernel(model)
    if kernel not in MASKED_KERNELS:
        raise ValueError(f"packed label scoring needs an attention kernel that takes a 4D mask "
                         f"({' or '.join(MASKED_KERNELS)}); this model runs {kernel!r}")
    input_ids = prompt["input_ids"]
    batch, length = input_ids.shape
    labels, answer_length = answers.ids.shape
    layout = _PackedAnswers.of(answers, 0 if first_only else answer_length)
    inputs = _append_tokens(prompt, layout.tokens[None].expand(batch, -1), None)
    inputs["attention_mask"] = _packed_mask(prompt["attention_mask"], layout, kernel)
    inputs["position_ids"] = _packed_positions(model, prompt, layout)
    kept = torch.arange(length - 1, length + len(layout.tokens), device=input_ids.device)
    logits = model(**inputs, use_cache=False, logits_to_keep=kept).logits.float().log_softmax(-1)
    logprobs = input_ids.new_zeros((batch, labels, answer_length), dtype=torch.float32)
    logprobs[:, :, 0] = logits[:, 0, answers.ids[:, 0]]
    if len(layout.tokens):
        targets = answers.ids[layout.owner, layout.step + 1]
        tail = logits[:, 1:].gather(-1, targets[None, :, None].expand(batch, -1, -1)).squeeze(-1)
        logprobs[:, layout.owner, layout.step + 1] = tail
    return logprobs


def attention_kernel(model: nn.Module) -> str | None:
    """The attention implementation of the model's language part (what a 4D mask would meet)."""
    return getattr(model.config.get_text_config(), "_attn_implementation", None)


def packed_scoring_supported(model: nn.Module) -> bool:
    return attention_kernel(model) in MASKED_KERNELS


@dataclass
class _PackedAnswers:
    """The answers' input tokens one after another ([A]: each answer without its last token), with the answer
    (`owner`) and the index within it (`step`) of each."""

    tokens: torch.Tensor
    owner: torch.Tensor
    step: torch.Tensor

    @classmethod
    def of(cls, answers: Answers, answer_length: int) -> _PackedAnswers:
        # Token j of an answer predicts token j + 1; the prompt's last position predicts every first token.
        inputs = answers.mask[:, 1:answer_length]
        owner, step = inputs.nonzero(as_tuple=True)
        return cls(answers.ids[owner, step], owner, step)


def _packed_mask(prompt_mask: torch.Tensor, layout: _PackedAnswers, kernel: str) -> torch.Tensor:
    """[B, 1, T, T] attention of the packed sequence: causal over the prompt's real tokens, each answer token on
    the whole prompt and on its own answer's tokens up to itself."""
    batch, length = prompt_mask.shape
    device = prompt_mask.device
    total = length + len(layout.tokens)
    index = torch.arange(total, device=device)
    # Every prompt token is its own "answer" -1, so one causal same-owner rule covers both parts.
    owner = torch.cat([torch.full((length,), -1, device=device), layout.owner])
    real = torch.cat([prompt_mask.bool(), prompt_mask.new_ones((batch, len(layout.tokens)), dtype=torch.bool)], 1)
    causal = index[None, :] <= index[:, None]
    own = owner[None, :] == owner[:, None]
    on_prompt = (owner[None, :] == -1) & causal
    allowed = (own & causal | on_prompt)[None] & real[:, None, :]
    # A padding query sees itself: no fully masked row (NaN in sdpa) whose output would reach nothing anyway.
    allowed = allowed | torch.eye(total, dtype=torch.bool, device=device)[None]
    allowed = allowed[:, None]
    if kernel == "sdpa":
        return allowed
    return torch.zeros(allowed.shape, device=device).masked_fill(~allowed, torch.finfo(torch.float32).min)


def _packed_positions(model: nn.Module, prompt: dict[str, torch.Tensor], layout: _PackedAnswers) -> torch.Tensor:
    """Position ids of the packed sequence ([B, T], or [3, B, T] for Qwen2-VL's images): the prompt's as the
    model numbers them, then each answer from the position after the prompt's last."""
    batch, length = prompt["input_ids"].shape
    device = prompt["input_ids"].device
    grids = {key: prompt[key] for key in GRID_KEYS if prompt.get(key) is not None}
    if grids and _has_rope_deltas(model):
        positions, _ = model.model.get_rope_index(prompt["input_ids"], mm_token_type_ids=prompt["mm_token_type_ids"],
                                                  attention_mask=prompt["attention_mask"], **grids)
    else:
        positions = torch.arange(length, device=device).expand(batch, -1)
    after = positions.amax(-1, keepdim=True) + 1
    return torch.cat([positions, after + layout.step.to(device)], dim=-1)


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
    inputs = _append_tokens(prompt, answer, mask)
    _reset_rope_deltas(model)
    positions = torch.arange(length - 1, length - 1 + answer.shape[1], device=answer.device)
    if every_position:
        return model(**inputs, use_cache=False).logits[:, positions]
    return model(**inputs, use_cache=False, logits_to_keep=positions).logits


def _append_tokens(prompt: dict[str, torch.Tensor], tokens: torch.Tensor, mask: torch.Tensor | None
                   ) -> dict[str, Any]:
    """The prompt batch with `tokens` ([B, A]) appended: text tokens (type 0), real where `mask` says."""
    inputs: dict[str, Any] = dict(prompt)
    for key in PER_TOKEN:
        if key in inputs and (key != "attention_mask" or mask is not None):
            extra = {"input_ids": tokens, "attention_mask": mask}.get(key, torch.zeros_like(tokens))
            inputs[key] = torch.cat([inputs[key], extra.to(inputs[key].dtype)], dim=1)
    return inputs


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
