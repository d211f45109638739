"""Kind `vlm-generative`: a generative VLM scores each label's answer words (mmtune/models/vlm_generative.py)."""

from mmtune.config import Config
from mmtune.errors import InputError
from mmtune.models.kinds import Kind, builder, register_kind


def check(cfg: Config) -> None:
    """It scores one answer per label with the language model's own head: there is no new head."""
    if cfg.train.loss == "bits":
        raise InputError("train.loss: bits needs a 2-output head; vlm-generative scores one answer per label "
                         "(use ce or focal, or kind vlm-head)")
    if cfg.model.freeze.head_only_epochs:
        raise InputError("model.freeze.head_only_epochs: must be 0 for vlm-generative (it has no new head to "
                         "train first)")


register_kind(Kind("vlm-generative", section="vlm", check=check,
                   build=builder("mmtune.models.vlm_generative", "VlmGenerativeClassifier")))
