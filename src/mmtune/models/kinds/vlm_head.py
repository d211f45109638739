"""Kind `vlm-head`: a generative VLM's hidden states pooled into an MLP head (mmtune/models/vlm_head.py)."""

from mmtune.models.kinds import Kind, register_kind
from mmtune.models.vlm_head import VlmHeadClassifier

register_kind(Kind("vlm-head", section="vlm", build=VlmHeadClassifier))
