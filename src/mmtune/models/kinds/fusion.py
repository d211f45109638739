"""Kind `fusion`: a text tower and an image tower, projected, fused, an MLP head (mmtune/models/fusion.py)."""

from mmtune.config import Config
from mmtune.models.fusions import check_fusion_name
from mmtune.models.kinds import Kind, builder, register_kind


def check_fusion(cfg: Config) -> None:
    check_fusion_name(cfg.model.fusion.method)  # an unknown name: exit 2 before any data or weights load


register_kind(Kind("fusion", section="fusion", build=builder("mmtune.models.fusion", "FusionClassifier"),
                   check=check_fusion))
