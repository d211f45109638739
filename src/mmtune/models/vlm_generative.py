"""Kind `vlm-generative`: a generative VLM as a classifier, scored on each label's answer words.

Class logits are the (length-normalized, summed, or first-token) log-likelihoods of the labels' answers after
the prompt (label_scoring.py), so the loop's CE, class weights, focal loss, macro-F1 selection and
probabilities work as for any head. Objective `class` trains those logits with the loop's loss; `lm` is plain
instruction tuning: the loss is the gold answer's token cross-entropy (the loop uses it as given, see
`provides_loss`), while evaluation still scores every label.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from mmtune.config import Config
from mmtune.errors import InputError
from mmtune.models.label_scoring import (
    Answers,
    answer_logprobs_cached,
    answer_logprobs_loop,
    answer_logprobs_packed,
    answer_loss,
    attention_kernel,
    packed_scoring_supported,
    reduce_scores,
)
from mmtune.models.vlm_common import VlmClassifierBase

log = logging.getLogger(__name__)


class VlmGenerativeClassifier(VlmClassifierBase):
    def __init__(self, cfg: Config, labels: list[str], output_size: int) -> None:
        if output_size != len(labels):
            raise InputError(f"train.loss: {cfg.train.loss} needs a {output_size}-output head; vlm-generative scores "
                             "one answer per label (use an objective with one output per label, or kind vlm-head)")
        if cfg.model.freeze.head_only_epochs:
            raise InputError("model.freeze.head_only_epochs: vlm-generative has no new head to train first")
        super().__init__(cfg, labels)
        self.output_size = len(labels)
        self.scoring = cfg.model.vlm.scoring
        self.objective = cfg.model.vlm.objective
        # Read by the loop once: in training, forward returns the loss itself (the lm objective).
        self.provides_loss = self.objective == "lm"
        answers = Answers.from_lists(self.inputs.answers)
        self.register_buffer("answer_ids", answers.ids, persistent=False)
        self.register_buffer("answer_mask", answers.mask, persistent=False)
        self._record_trainable()
        self.packed = packed_scoring_supported(self.vlm)
        if not self.packed:
            log.warning(f"{cfg.model.name}: attention kernel {attention_kernel(self.vlm)!r} takes no 4D mask; the "
                        "labels are scored through the shared prompt's cache" +
                        (", in training with one forward per label (gradient checkpointing turns the cache off)"
                         if cfg.model.gradient_checkpointing else ""))

    @property
    def answers(self) -> Answers:
        return Answers(self.answer_ids, self.answer_mask)

    def collate(self, examples: Any, *, train: bool) -> dict[str, Any]:
        batch = super().collate(examples, train=train)
        if train and self.objective == "lm":
            batch["answer_target"] = torch.tensor([e.target for e in examples])
        return batch

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        prompt = {k: v for k, v in batch.items() if k != "answer_target"}
        if self.training and self.objective == "lm":
            return answer_loss(self.vlm, prompt, self.answers, batch["answer_target"])
        first_only = self.scoring == "first_token"
        if self.packed:
            # One forward over prompt + packed answers (and one backward): works under gradient checkpointing,
            # and measured faster than the shared cache in training and in inference (benchmarks/RESULTS.md).
            logprobs = answer_logprobs_packed(self.vlm, prompt, self.answers, first_only=first_only)
        elif self.training and torch.is_grad_enabled() and self.cfg.model.gradient_checkpointing:
            # Under checkpointing transformers drops the cache: each label gets its own full forward.
            logprobs = answer_logprobs_loop(self.vlm, prompt, self.answers)
        else:
            logprobs = answer_logprobs_cached(self.vlm, prompt, self.answers, first_only=first_only)
        return reduce_scores(logprobs, self.answers, self.scoring)

