"""The one save/load of trainable weights (training/checkpoint.py): only what trains, with the buffers of the
modules that own it, back onto a fresh model; tensors that do not fit name the file."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmtune.errors import InputError
from mmtune.models.freezing import apply_freeze
from mmtune.training.checkpoint import load_trainable_state, trainable_state
from tests.models.backbones import bert_batch, tiny_bert, train_steps


def _trainable(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def test_only_trainable_parameters_are_saved() -> None:
    backbone = tiny_bert()
    apply_freeze(backbone, "last_n", last_n=1)
    state = trainable_state(backbone, _trainable(backbone))
    # BERT's buffers (position_ids, token_type_ids) are not persistent, so only parameters are left.
    assert set(state) == set(_trainable(backbone))
    assert all(not tensor.requires_grad and tensor.device.type == "cpu" for tensor in state.values())


def test_batchnorm_statistics_go_with_their_trained_weights() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))
    apply_freeze(model, "none", freeze_globs=["0.*", "1.*"])
    state = trainable_state(model, _trainable(model))
    assert {"3.running_mean", "3.running_var", "3.num_batches_tracked"} <= set(state)
    assert not any(name.startswith(("0.", "1.")) for name in state)


def test_round_trip_onto_a_fresh_backbone() -> None:
    backbone, head = tiny_bert(seed=0), nn.Linear(32, 2)
    apply_freeze(backbone, "last_n", last_n=1)
    train_steps(backbone, head, steps=2)
    state = {name: tensor.clone() for name, tensor in trainable_state(backbone, _trainable(backbone)).items()}
    fresh = tiny_bert(seed=0)  # the same "pretrained" weights
    load_trainable_state(fresh, state)
    backbone.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(**bert_batch()).pooler_output, backbone(**bert_batch()).pooler_output)


def test_tensors_that_do_not_fit_name_the_file() -> None:
    model = tiny_bert()
    with pytest.raises(InputError, match=r"w\.safetensors: has tensors the model lacks \(nowhere\.weight\)"):
        load_trainable_state(model, {"nowhere.weight": torch.zeros(1)}, "w.safetensors")
    with pytest.raises(InputError, match=r"w\.safetensors: tensor shapes do not fit .*pooler\.dense\.bias \[3\]"):
        load_trainable_state(model, {"pooler.dense.bias": torch.zeros(3)}, "w.safetensors")
