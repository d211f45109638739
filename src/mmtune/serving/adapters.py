"""A VLM run's LoRA adapters in PEFT's own format, and (`merge`) the base model with them merged in.

    peft/     adapter_config.json + adapter_model.safetensors: `PeftModel.from_pretrained(base, "peft")`
    merged/   a plain transformers folder (base + adapters), its processor files, and for vlm-generative
              mmtune_scoring.json: the prompt template, system prompt, label words and scoring that turn the
              model's answer likelihoods into class probabilities

mmtune injects adapters in place (models/adapters.py), so its parameter names lack the `base_model.model.`
prefix a PeftModel's saved adapters carry; it is added here. The merge loads the copied base checkpoint in
float32 (never quantized: merging into 4-bit weights loses precision) with the run's model class.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from mmtune.config import Config

PEFT, MERGED, SCORING = "peft", "merged", "mmtune_scoring.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def export_adapters(classifier: nn.Module, cfg: Config, out: Path, merge: bool,
                    copied: dict[str, str]) -> dict[str, Any]:
    """Write peft/ (and merged/) for a vlm-* run with LoRA; the manifest entries that say so ({} otherwise)."""
    vlm = getattr(classifier, "vlm", None)
    if not cfg.model.kind.startswith("vlm-") or not cfg.model.lora.enabled or vlm is None:
        return {}
    from peft import get_peft_model_state_dict

    base_slot = copied.get(cfg.model.name or "", cfg.model.name or "")
    peft_config = copy.deepcopy(vlm.peft_config["default"])
    peft_config.base_model_name_or_path = f"../{base_slot}"
    peft_config.inference_mode = True
    folder = out / PEFT
    folder.mkdir()
    peft_config.save_pretrained(str(folder))
    state = get_peft_model_state_dict(vlm, adapter_name="default")
    tensors = {f"base_model.model.{key}": value.detach().cpu().contiguous() for key, value in state.items()}
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    extras: dict[str, Any] = {"peft": {"folder": PEFT, "base": base_slot}}
    if merge:
        merge_into(type(vlm), out / base_slot, folder, out / MERGED)
        if cfg.model.kind == "vlm-generative":
            (out / MERGED / SCORING).write_text(json.dumps(scoring(classifier, cfg), indent=1, ensure_ascii=False),
                                                encoding="utf-8")
        extras["merged"] = {"folder": MERGED}
    return extras


def merge_into(model_class: type, base: Path, adapters: Path, out: Path) -> None:
    """base + adapters, merged, saved as a plain transformers folder with the base's processor files."""
    from peft import PeftModel

    model = model_class.from_pretrained(str(base), dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapters)).merge_and_unload()
    merged.save_pretrained(str(out))
    for path in base.iterdir():  # tokenizer, processor and chat template files: everything but weights and config
        target = out / path.name
        if path.is_file() and not target.exists() and not path.name.endswith(_WEIGHT_SUFFIXES):
            shutil.copyfile(path, target)


def scoring(classifier: nn.Module, cfg: Config) -> dict[str, Any]:
    """What vlm-generative classifies with: each label's answer words after the filled prompt, scored by `scoring`."""
    inputs = classifier.inputs
    vlm = cfg.model.vlm
    return {"labels": list(classifier.labels), "label_words": dict(zip(classifier.labels, inputs.words)),
            "prompt_template": inputs.template, "system_prompt": vlm.system_prompt, "scoring": vlm.scoring,
            "answer_token_ids": [list(ids) for ids in inputs.answers],
            "how": "fill prompt_template's {text} with the post's caption and {labels} with the label words joined "
                   "by ', ', render it with the processor's chat template (generation prompt on), then score each "
                   "label's answer_token_ids after it: mean = mean token log-likelihood, sum = summed, "
                   "first_token = the first token's; softmax over labels gives the probabilities"}
