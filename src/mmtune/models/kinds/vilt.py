"""Kind `vilt`: one ViLT checkpoint over text and image together, an MLP head (mmtune/models/vilt.py)."""

from mmtune.models.kinds import Kind, builder, register_kind

register_kind(Kind("vilt", section="vilt", build=builder("mmtune.models.vilt", "ViltClassifier")))
