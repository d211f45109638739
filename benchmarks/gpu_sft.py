"""SFT throughput and peak memory: `mmtune sft`'s trainer against TRL's SFTTrainer with its defaults.

Target (issue 6): on a GPU machine, record SFT samples/s and peak memory against TRL's defaults.

    HF_HUB_OFFLINE=1 python benchmarks/gpu_sft.py [--size tiny|real] [--steps 20] [--warmup 3]
        [--batch-size 4] [--answer-words 48] [--work DIR]

The model is a LLaVA assembled by `build_llava` from random-weight parts built from configs (no network):
    tiny  make-tiny's SigLIP (32 px) + Qwen2 (hidden 32, 2 layers): a CPU smoke run of the script;
    real  a SigLIP-base vision tower (224 px, patch 16: 196 image tokens, 12 layers, hidden 768) + a
          Qwen2-0.5B-shaped LM (24 layers, hidden 896, 14 heads, 2 KV heads, vocabulary 151,936): the
          sizes of a small real VLM, so memory and speed are honest; the token ids come from the tiny
          tokenizer, which does not change the cost per token.
Data: --batch-size x (--warmup + --steps) prompt/completion rows (one 336 px noise image, a question,
an answer of --answer-words words), the same rows for both variants.

Each variant runs in its own process (so peak memory is its own), LoRA r=16 on the LM's projections:
    mmtune  `mmtune.generative.sft.sft_trainer` from an mmtune config: mixed precision auto (bf16 on
            GPUs that have it), the LoRA base loaded in half precision on a GPU (model.vlm.dtype auto),
            gradient checkpointing off (model.gradient_checkpointing default);
    trl     `SFTTrainer` with `SFTConfig` defaults (only output_dir, batch size, one epoch, no saving,
            no trackers, no truncation set; on a CPU also bf16 off, which TRL's default cannot run there):
            TRL turns gradient checkpointing and bf16 on; the model folder is loaded with `from_pretrained`
            defaults (fp32 as saved).
samples/s counts the steps after --warmup; peak memory is `torch.cuda.max_memory_allocated` on a GPU,
the process's peak RSS on a CPU. The ratio is mmtune / trl. The last line is JSON with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import TrainerCallback

REAL_VISION = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
               "image_size": 224, "patch_size": 16}
REAL_LM = {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
           "intermediate_size": 4864, "vocab_size": 151936, "max_position_embeddings": 4096}
WORDS = "trời hôm nay đẹp quá mình đi chơi công viên với bạn bè rồi ăn phở bò".split()


class StepClock(TrainerCallback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())


def build_parts(size: str, work: Path) -> Path:
    """The LLaVA folder to train, assembled from a vision tower and an LM of the chosen size."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoProcessor, AutoTokenizer

    from mmtune.config import BuildConfig
    from mmtune.generative.build_vlm import build_llava, save_vlm
    from mmtune.testing.tiny import make_tiny

    vision, lm = make_tiny("siglip", work / "siglip"), make_tiny("qwen2", work / "qwen2")
    if size == "real":
        config = AutoConfig.from_pretrained(vision)
        config.vision_config.update(REAL_VISION)
        AutoModel.from_config(config).save_pretrained(work / "siglip-real")
        processor = AutoProcessor.from_pretrained(vision)
        processor.image_processor.size = {"height": 224, "width": 224}
        processor.save_pretrained(work / "siglip-real")
        tiny_lm = AutoConfig.from_pretrained(lm).to_dict()
        tiny_lm.pop("layer_types", None)  # one entry per layer: rebuilt for 24 layers
        lm_config = AutoConfig.for_model(**{**tiny_lm, **REAL_LM})
        AutoModelForCausalLM.from_config(lm_config).save_pretrained(work / "qwen2-real")
        AutoTokenizer.from_pretrained(lm).save_pretrained(work / "qwen2-real")
        vision, lm = work / "siglip-real", work / "qwen2-real"
    return save_vlm(build_llava(BuildConfig(vision=str(vision), llm=str(lm))), work / "llava")


def write_rows(work: Path, count: int, answer_words: int) -> Path:
    rng = np.random.default_rng(0)
    images = work / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (336, 336, 3), dtype=np.uint8)).save(images / f"{i}.png")
        answer = " ".join(rng.choice(WORDS, answer_words))
        lines.append(json.dumps({"images": [f"{i}.png"], "messages": [
            {"role": "user", "content": "Trong ảnh có gì? Hãy mô tả chi tiết."},
            {"role": "assistant", "content": answer}]}, ensure_ascii=False))
    (work / "chat.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return work / "chat.jsonl"


def run_variant(variant: str, model_dir: Path, data: Path, work: Path, batch_size: int) -> dict[str, Any]:
    from mmtune.config import load_config
    from mmtune.generative.sft import read_chat_splits, sft_trainer
    from mmtune.generative.trainer_setup import load_vlm, lora_config

    cfg = load_config(None, [f"output_dir={work / variant}", f"model.name={model_dir}", f"data.train={data}",
                             f"data.train_images={data.parent / 'images'}", "model.lora.enabled=true",
                             "model.lora.r=16", "model.lora.alpha=32", "train.epochs=1",
                             f"train.batch_size={batch_size}", "train.log_with=[]", "chat.max_length=null"])
    splits = read_chat_splits(cfg)
    if variant == "mmtune":
        model, processor = load_vlm(cfg)
        trainer = sft_trainer(cfg, model, processor, splits, work / variant, lora_config(cfg))
        trainer.args.save_strategy = "no"
    else:
        from datasets import Dataset
        from transformers import AutoModelForImageTextToText
        from trl import SFTConfig, SFTTrainer

        from mmtune.generative.trainer_setup import with_images
        from mmtune.models.vlm_families import load_processor

        model = AutoModelForImageTextToText.from_pretrained(model_dir)
        # TRL's default bf16=True refuses to start on a CPU: the smoke run turns it off there.
        cpu_only = {} if torch.cuda.is_available() else {"bf16": False}
        args = SFTConfig(output_dir=str(work / variant), per_device_train_batch_size=batch_size,
                         num_train_epochs=1, save_strategy="no", report_to=[], max_length=None, **cpu_only)
        dataset = with_images(Dataset.from_list(splits.train.rows), cfg.data.image.max_pixels)
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=load_processor(model_dir),
                             peft_config=lora_config(cfg))
    clock = StepClock()
    trainer.add_callback(clock)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer.train()
    peak = (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"variant": variant, "ends": clock.ends, "started": started, "peak_mib": peak,
            "gradient_checkpointing": bool(trainer.args.gradient_checkpointing),
            "bf16": bool(trainer.args.bf16), "fp16": bool(trainer.args.fp16),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}


def samples_per_second(result: dict[str, Any], warmup: int, batch_size: int) -> float:
    ends = result["ends"]
    timed = ends[warmup:]
    start = ends[warmup - 1] if warmup else result["started"]
    return len(timed) * batch_size / (timed[-1] - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "real"), default="tiny")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--answer-words", type=int, default=48)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--variant", choices=("mmtune", "trl"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # a child process: one variant, its figures as JSON on the last line
        result = run_variant(args.variant, args.work / "llava", args.work / "chat.jsonl", args.work, args.batch_size)
        print(json.dumps(result))
        return
    if args.work:
        measure(args, args.work)
    else:
        with tempfile.TemporaryDirectory(prefix="gpu-sft-") as work:  # the real-size model is a few GB
            measure(args, Path(work))


def measure(args: argparse.Namespace, work: Path) -> None:
    model_dir = build_parts(args.size, work)
    write_rows(work, args.batch_size * (args.warmup + args.steps), args.answer_words)
    figures = {}
    for variant in ("mmtune", "trl"):
        child = subprocess.run([sys.executable, __file__, "--variant", variant, "--work", str(work),
                                "--batch-size", str(args.batch_size)], capture_output=True, text=True,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
        if child.returncode != 0:
            sys.exit(f"{variant} failed:\n{child.stderr[-3000:]}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        result["samples_per_s"] = samples_per_second(result, args.warmup, args.batch_size)
        figures[variant] = {k: v for k, v in result.items() if k not in ("ends", "started")}
        print(f"{variant:7s} {result['samples_per_s']:8.2f} samples/s  peak {result['peak_mib']:9.0f} MiB  "
              f"(checkpointing {result['gradient_checkpointing']}, bf16 {result['bf16']}, fp16 {result['fp16']}, "
              f"{result['device']})")
    ratio = {"samples_per_s": figures["mmtune"]["samples_per_s"] / figures["trl"]["samples_per_s"],
             "peak_memory": figures["mmtune"]["peak_mib"] / figures["trl"]["peak_mib"]}
    print(f"mmtune / trl: samples/s x{ratio['samples_per_s']:.2f}, peak memory x{ratio['peak_memory']:.2f}")
    print(json.dumps({"size": args.size, "batch_size": args.batch_size, "steps": args.steps, **figures,
                      "ratio": ratio, "model": str(model_dir)}))


if __name__ == "__main__":
    main()
