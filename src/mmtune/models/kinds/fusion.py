"""Kind `fusion`: a text tower and an image tower, projected, fused, an MLP head (mmtune/models/fusion.py)."""

from mmtune.config import Config
from mmtune.models.fusion import FusionClassifier
from mmtune.models.fusions import get_fusion
from mmtune.models.kinds import Kind, register_kind


def check_fusion(cfg: Config) -> None:
    get_fusion(cfg.model.fusion.method)  # an unknown name: exit 2 before any data or weights load


register_kind(Kind("fusion", section="fusion", build=FusionClassifier, check=check_fusion))
