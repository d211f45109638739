"""`mmtune sft`, `mmtune dpo` and `mmtune build-vlm`: a VLM trained with TRL's trainers, or built from parts."""

from __future__ import annotations

from mmtune.config import Config


def train_generative(verb: str, cfg: Config, resume: bool = False) -> str:
    """Run `verb` (sft, dpo or build-vlm); returns why it stopped (finished, time_budget or signal)."""
    # Imported here: each verb loads torch, transformers and TRL only when it runs.
    if verb == "sft":
        from mmtune.generative.sft import run_sft

        return run_sft(cfg, resume=resume)
    if verb == "dpo":
        from mmtune.generative.dpo import run_dpo

        return run_dpo(cfg, resume=resume)
    from mmtune.generative.stages import run_build

    return run_build(cfg, resume=resume)
