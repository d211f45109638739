"""Kind `fusion`: a text tower and an image tower, projected, fused, an MLP head (mmtune/models/fusion.py)."""

from mmtune.models.fusion import FusionClassifier
from mmtune.models.kinds import Kind, register_kind

register_kind(Kind("fusion", section="fusion", build=FusionClassifier))
