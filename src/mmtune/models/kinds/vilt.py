"""Kind `vilt`: one ViLT checkpoint over text and image together, an MLP head (mmtune/models/vilt.py)."""

from mmtune.models.kinds import Kind, register_kind
from mmtune.models.vilt import ViltClassifier

register_kind(Kind("vilt", section="vilt", build=ViltClassifier))
