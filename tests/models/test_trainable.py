"""The trainable-set bookkeeping every kind uses: what trains, split by prefix, and the two-stage switch."""

from __future__ import annotations

from torch import nn

from mmtune.models.trainable import TrainableSet


def _model() -> nn.Module:
    model = nn.ModuleDict({"backbone": nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), "head": nn.Linear(2, 1)})
    model["backbone"][0].requires_grad_(False)  # frozen by its preset: never trains
    return model


def test_groups_split_the_recorded_set_by_prefix() -> None:
    model = _model()
    trainable = TrainableSet(model, ("backbone.",))
    head, backbone = trainable.groups(model)
    assert (head.role, backbone.role) == ("head", "backbone")
    assert head.params == list(model["head"].parameters())
    assert backbone.params == list(model["backbone"][1].parameters())
    assert trainable.sorted_names() == ["backbone.1.bias", "backbone.1.weight", "head.bias", "head.weight"]


def test_the_backbone_switch_restores_the_recorded_set_only() -> None:
    model = _model()
    trainable = TrainableSet(model, ("backbone.",))
    trainable.set_backbone(model, False)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    trainable.set_backbone(model, True)
    assert not any(p.requires_grad for p in model["backbone"][0].parameters())
    assert all(p.requires_grad for p in model["backbone"][1].parameters())
