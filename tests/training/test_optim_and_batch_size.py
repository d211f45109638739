import math

import pytest
import torch
from torch import nn

from mmtune.config import TrainConfig
from mmtune.data.post import Post
from mmtune.models.base import Example, ParamGroup
from mmtune.training.batch_size import find_batch_size, plan_batches
from mmtune.training.optim import build_optimizer, scaled_learning_rates


@pytest.mark.parametrize(("rule", "factor"), [("none", 1.0), ("linear", 4.0), ("sqrt", 2.0)])
def test_learning_rates_follow_the_effective_batch_rule(rule, factor):
    cfg = TrainConfig(lr=1e-5, head_lr=1e-3, lr_scaling=rule, reference_batch_size=16)
    rates = scaled_learning_rates(cfg, effective_batch=64)
    assert math.isclose(rates.backbone, 1e-5 * factor) and math.isclose(rates.head, 1e-3 * factor)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(5000, 16)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 3)


def test_optimizer_groups_and_no_decay():
    model = _Tiny()
    groups = [ParamGroup("backbone", [*model.embed.parameters(), *model.norm.parameters()]),
              ParamGroup("head", list(model.head.parameters()))]
    cfg = TrainConfig(weight_decay=0.1)
    optimizer = build_optimizer(model, groups, cfg, scaled_learning_rates(cfg, 16))
    by_role = {(g["role"], g["weight_decay"]): len(g["params"]) for g in optimizer.param_groups}
    assert by_role == {("backbone", 0.1): 1, ("backbone", 0.0): 2, ("head", 0.1): 1, ("head", 0.0): 1}
    assert {g["lr"] for g in optimizer.param_groups if g["role"] == "head"} == {cfg.head_lr}


def test_adamw_8bit_keeps_embeddings_in_32_bit_state():
    pytest.importorskip("bitsandbytes")
    model = _Tiny()
    groups = [ParamGroup("head", list(model.parameters()))]
    cfg = TrainConfig(optimizer="adamw_8bit")
    optimizer = build_optimizer(model, groups, cfg, scaled_learning_rates(cfg, 16))
    x = torch.randint(0, 5000, (8,))
    model.head(model.norm(model.embed(x))).sum().backward()
    optimizer.step()
    embed_state = optimizer.state[model.embed.weight]
    assert embed_state["state1"].dtype == torch.float32
    assert type(optimizer).__name__ == "AdamW8bit"


def test_batch_plan_keeps_the_effective_batch():
    assert plan_batches(8, 32) == plan_batches(8, 32)
    plan = plan_batches(8, 32)
    assert (plan.batch_size, plan.grad_accum, plan.effective) == (8, 4, 32)
    assert plan_batches(64, 32).batch_size == 32


class _Greedy(nn.Module):
    """Runs out of memory above 12 posts a batch, like a GPU would."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, 3)
        self.tried = []

    def collate(self, examples, *, train):
        return {"x": torch.ones(len(examples), 2)}

    def forward(self, batch):
        self.tried.append(batch["x"].shape[0])
        if batch["x"].shape[0] > 12:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.layer(batch["x"])


def test_automatic_batch_size_halves_until_it_fits():
    model = _Greedy()
    examples = [Example(id=str(i), target=0, text="x", post=Post(str(i), (), "x")) for i in range(5)]
    assert find_batch_size(model, examples, torch.device("cpu"), start=64) == 8
    assert model.tried == [64, 32, 16, 8]
