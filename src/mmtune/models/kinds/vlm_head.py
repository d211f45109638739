"""Kind `vlm-head`: a generative VLM's hidden states pooled into an MLP head (mmtune/models/vlm_head.py)."""

from mmtune.models.kinds import Kind, builder, register_kind

register_kind(Kind("vlm-head", section="vlm", build=builder("mmtune.models.vlm_head", "VlmHeadClassifier")))
