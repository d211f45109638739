"""The Classifier bookkeeping of what trains, the same for every kind: the parameters any stage trains (recorded
once the model is set up: what a run saves), split into head and backbone by name prefix, and the two-stage
switch that freezes the backbone for the head-only epochs and restores its configured trainable set."""

from __future__ import annotations

from torch import nn

from mmtune.models.base import ParamGroup


class TrainableSet:
    def __init__(self, model: nn.Module, backbone_prefixes: tuple[str, ...]) -> None:
        self.names = {name for name, param in model.named_parameters() if param.requires_grad}
        self.backbone_prefixes = backbone_prefixes

    def groups(self, model: nn.Module) -> list[ParamGroup]:
        """Head and backbone parameters, each in the model's registration order."""
        head, backbone = [], []
        for name, param in model.named_parameters():
            if name in self.names:
                (backbone if name.startswith(self.backbone_prefixes) else head).append(param)
        return [ParamGroup("head", head), ParamGroup("backbone", backbone)]

    def set_backbone(self, model: nn.Module, trainable: bool) -> None:
        for name, param in model.named_parameters():
            if name.startswith(self.backbone_prefixes):
                param.requires_grad_(trainable and name in self.names)

    def sorted_names(self) -> list[str]:
        return sorted(self.names)


class TracksTrainable:
    """The Classifier methods about what trains, for a kind whose `self.trainable` is its TrainableSet."""

    trainable: TrainableSet

    def parameter_groups(self) -> list[ParamGroup]:
        return self.trainable.groups(self)  # type: ignore[arg-type]  # mixed into an nn.Module

    def set_backbone_trainable(self, trainable: bool) -> None:
        self.trainable.set_backbone(self, trainable)  # type: ignore[arg-type]

    def trainable_parameter_names(self) -> list[str]:
        return self.trainable.sorted_names()
