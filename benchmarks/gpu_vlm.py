"""LoRA classification fine-tuning of an InternVL 1B-sized VLM: mmtune's vlm-generative against TRL's SFTTrainer.

Targets (issue 4): mmtune >= 1.5x TRL's training samples/s at <= 0.6x its peak GPU memory, and a configuration
that fits a 15 GB (T4) budget at batch >= 4.

    HF_HUB_OFFLINE=1 python benchmarks/gpu_vlm.py [--tiles 1,6] [--modes fp16,qlora4] [--batch-size 4]
        [--steps 12] [--work DIR]
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/gpu_vlm.py --smoke   # tiny model on the CPU

The model is InternVL2-1B's architecture (Vintern-1B's) with random weights: InternViT-300M (hidden 1024,
24 layers, 448 px, 14 px patches, pixel shuffle to 256 tokens per tile) and Qwen2-0.5B (hidden 896, 24 layers,
14 heads, 2 key/value heads, 151,674-token vocabulary), built from its config, saved with save_pretrained and
loaded back, with the tiny InternVL's tokenizer and chat template (token ids fit the big vocabulary). Posts have
one 1344x896 image (3x2 tiles of 448 px at 6 tiles, plus the thumbnail) and a Vietnamese caption; 4 labels.

For each tile budget and mode, in one process, one after the other on the same data and batch size:
    mmtune  kind vlm-generative, objective class (label-word scores, head only at the scored positions),
            LoRA r 16 on the language model's projections, gradient checkpointing, TrainingLoop with
            Accelerate; timed: one epoch of --steps batches (`TrainingLoop._train_epoch`);
    trl     SFTTrainer on the same checkpoint, LoRA (same targets and rank), gradient checkpointing, the same
            posts as prompt-completion conversations (loss on the answer only), --steps steps at the same
            batch size; timed: `trainer.train()` (its train_samples_per_second).
Modes: fp16 (half-precision weights, fp16 autocast + grad scaler, as on a T4) and qlora4 (4-bit NF4 weights).
Peak GPU memory is torch.cuda.max_memory_allocated over model load and training. With --smoke the same code
runs on the tiny InternVL on the CPU (fp32, 2 steps): a check that the script works, not a measurement.
The last line is JSON with every result and the ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from mmtune.compat import SavedProcessor, keep_bnb_4bit_training_layout
from mmtune.config import Config, build
from mmtune.data.checks import load_posts
from mmtune.models.adapters import quantized_compute_dtype
from mmtune.models.vlm_families import load_processor
from mmtune.models.vlm_loading import lora_targets
from mmtune.recipes.train import build_model
from mmtune.testing.corpus import CORPUS
from mmtune.testing.tiny import make_tiny
from mmtune.training.budget import StopSignals
from mmtune.training.loop import TrainingLoop, make_accelerator

LABELS = ["image-sarcasm", "multi-sarcasm", "not-sarcasm", "text-sarcasm"]
WORDS = {"image-sarcasm": "ảnh", "multi-sarcasm": "cả hai", "not-sarcasm": "không", "text-sarcasm": "chữ"}
VISION_1B = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
             "image_size": [448, 448], "patch_size": [14, 14]}
TEXT_1B = {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
           "intermediate_size": 4864, "vocab_size": 151674, "max_position_embeddings": 32768}
LORA_R = 16


def build_checkpoint(work: Path, smoke: bool) -> Path:
    """The tiny InternVL's tokenizer and processor; at full size, a 1B-sized model and 448 px tiles."""
    folder = make_tiny("internvl", work / "internvl")
    if smoke:
        return folder
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    tiny = InternVLConfig.from_pretrained(folder)
    # Per-layer lists of the 2-layer tiny config would contradict 24 layers: they are derived again.
    text = {k: v for k, v in tiny.text_config.to_dict().items() if k not in ("layer_types", "max_window_layers")}
    text |= TEXT_1B
    config = InternVLConfig(vision_config={**tiny.vision_config.to_dict(), **VISION_1B}, text_config=text,
                            image_token_id=tiny.image_token_id, image_seq_length=256, downsample_ratio=0.5)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = InternVLForConditionalGeneration(config).half()
    model.save_pretrained(folder)
    del model
    processor = load_processor(str(folder))
    processor.image_seq_length = 256
    processor.image_processor.size = {"height": 448, "width": 448}
    SavedProcessor(processor, "InternVLProcessor").save_pretrained(folder)
    return folder


def set_tiles(folder: Path, tiles: int) -> None:
    """Both trainers read the saved image processor: at most `tiles` tiles (+ thumbnail) per image."""
    path = folder / "processor_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["image_processor"] |= {"crop_to_patches": tiles > 1, "max_patches": tiles, "min_patches": 1}
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def write_posts(work: Path, count: int, size: tuple[int, int]) -> Path:
    rng = random.Random(0)
    images = work / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        Image.effect_noise(size, 40 + i % 30).convert("RGB").save(images / f"{i}.jpg", quality=85)
        lines.append(json.dumps({"id": str(i), "image": f"{i}.jpg", "caption": rng.choice(CORPUS),
                                 "label": LABELS[i % 4]}, ensure_ascii=False))
    path = work / "posts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def mmtune_config(folder: Path, data: Path, work: Path, mode: str, tiles: int, batch: int, smoke: bool) -> Config:
    model: dict[str, Any] = {"kind": "vlm-generative", "name": str(folder), "gradient_checkpointing": True,
                             "lora": {"enabled": True, "r": LORA_R, "alpha": 2 * LORA_R, "dropout": 0.0},
                             "vlm": {"prompt": "vi", "label_words": WORDS, "max_tiles": tiles, "image_size": 1344}}
    if mode == "qlora4":
        model["quantize"] = "4bit"
    elif not smoke:
        model["vlm"]["dtype"] = "float16"
    raw = {"name": "gpu-vlm", "output_dir": str(work / "run"), "seed": 0,
           "data": {"train": str(data), "train_images": str(data.parent / "images"), "labels": LABELS},
           "model": model,
           "train": {"epochs": 1, "batch_size": batch, "lr": 2e-4, "head_lr": 2e-4, "warmup_ratio": 0.0,
                     "mixed_precision": "no" if smoke else "fp16", "log_with": [], "feature_cache": False}}
    return build(Config, raw, source="benchmark")


def run_mmtune(cfg: Config, steps: int) -> dict[str, Any]:
    reset_memory()
    started_load = time.perf_counter()
    classifier = build_model(cfg, LABELS)
    posts = load_posts(cfg.data.train, cfg.data.train_images, cfg.data, labels=LABELS, require_label=True).posts
    examples = classifier.prepare(posts[: steps * cfg.train.batch_size], train=True)
    run_dir = Path(cfg.output_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    loop = TrainingLoop(cfg, classifier, make_accelerator(cfg, run_dir), run_dir, "benchmark")
    loop.setup(examples, examples[: cfg.train.batch_size], resume=False)
    load_s = time.perf_counter() - started_load
    sync()
    started = time.perf_counter()
    stopped = loop._train_epoch(StopSignals())
    sync()
    seconds = time.perf_counter() - started
    assert stopped is None, stopped
    result = {"samples_per_s": len(examples) / seconds, "peak_gpu_gb": peak_memory_gb(), "load_s": round(load_s, 1)}
    del loop, classifier
    return result


def run_trl(cfg: Config, steps: int) -> dict[str, Any]:
    try:
        from datasets import Dataset
        from peft import LoraConfig
        from trl import SFTConfig, SFTTrainer
    except ImportError as error:
        return {"skipped": f"trl not importable: {error}"}
    from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

    reset_memory()
    folder = cfg.model.name
    kwargs: dict[str, Any] = {"attn_implementation": "sdpa"}
    quantized = cfg.model.quantize == "4bit"
    if quantized:  # the same 4-bit settings as mmtune's load_quantized
        compute = quantized_compute_dtype()
        kwargs |= {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                             bnb_4bit_compute_dtype=compute,
                                                             bnb_4bit_use_double_quant=True),
                   "dtype": compute}
    else:
        kwargs["dtype"] = torch.float16 if cfg.train.mixed_precision == "fp16" else torch.float32
    model = AutoModelForImageTextToText.from_pretrained(folder, **kwargs)
    if quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        keep_bnb_4bit_training_layout(model)
    if torch.cuda.is_available() and cfg.model.quantize == "none":
        model.to("cuda")
    processor = load_processor(folder)
    posts = load_posts(cfg.data.train, cfg.data.train_images, cfg.data, labels=LABELS, require_label=True).posts
    posts = posts[: steps * cfg.train.batch_size]
    choices = ", ".join(WORDS.values())
    rows = [{"images": [Image.open(p.images[0]).convert("RGB")],
             "prompt": [{"role": "user", "content": [
                 {"type": "image"}, {"type": "text", "text": f"Chú thích: {p.text}\nNhãn ({choices}):"}]}],
             "completion": [{"role": "assistant", "content": [{"type": "text", "text": WORDS[p.label]}]}]}
            for p in posts]
    peft_config = LoraConfig(r=LORA_R, lora_alpha=2 * LORA_R, lora_dropout=0.0,
                             target_modules=lora_targets(model, None, with_vision=False))
    args = SFTConfig(output_dir=str(Path(cfg.output_dir) / "trl"), per_device_train_batch_size=cfg.train.batch_size,
                     max_steps=steps, learning_rate=2e-4, gradient_checkpointing=True,
                     gradient_checkpointing_kwargs={"use_reentrant": False},
                     fp16=cfg.train.mixed_precision == "fp16", report_to=[], save_strategy="no", logging_steps=steps,
                     max_length=None, completion_only_loss=True, dataloader_num_workers=0,
                     use_cpu=not torch.cuda.is_available())
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=processor,
                         peft_config=peft_config)
    sync()
    started = time.perf_counter()
    trainer.train()
    sync()
    seconds = time.perf_counter() - started
    result = {"samples_per_s": len(rows) / seconds, "peak_gpu_gb": peak_memory_gb()}
    del trainer, model
    return result


def reset_memory() -> None:
    """Free the previous run and forget its Accelerate state (each trainer sets its own precision)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_memory_gb() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", default="1,6")
    parser.add_argument("--modes", default="fp16,qlora4")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--smoke", action="store_true", help="tiny InternVL on the CPU, 2 steps: the script runs")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    if args.smoke:
        args.tiles, args.steps, args.batch_size = "1,2", 2, 2
    elif not torch.cuda.is_available():
        parser.error("needs a CUDA GPU; use --smoke to check the script on the CPU")
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-vlm-"))
    folder = build_checkpoint(work, args.smoke)
    data = write_posts(work, args.steps * args.batch_size, (1344, 896) if not args.smoke else (96, 64))
    results = []
    for tiles in (int(t) for t in args.tiles.split(",")):
        set_tiles(folder, tiles)
        for mode in args.modes.split(","):
            cfg = mmtune_config(folder, data, work, mode, tiles, args.batch_size, args.smoke)
            ours, theirs = run_mmtune(cfg, args.steps), run_trl(cfg, args.steps)
            weights = "4-bit" if mode == "qlora4" else ("fp32 (smoke)" if args.smoke else "fp16")
            row = {"tiles": tiles, "mode": mode, "weights": weights, "batch_size": args.batch_size,
                   "mmtune": ours, "trl": theirs}
            if "samples_per_s" in theirs:
                row["speed_ratio"] = round(ours["samples_per_s"] / theirs["samples_per_s"], 2)
                if ours["peak_gpu_gb"] and theirs["peak_gpu_gb"]:
                    row["memory_ratio"] = round(ours["peak_gpu_gb"] / theirs["peak_gpu_gb"], 2)
            if ours["peak_gpu_gb"] is not None:
                row["fits_t4_15gb"] = ours["peak_gpu_gb"] <= 15.0
            results.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps({"smoke": args.smoke, "device": torch.cuda.get_device_name() if torch.cuda.is_available()
                      else "cpu", "results": results}))


if __name__ == "__main__":
    main()
