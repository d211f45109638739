"""Label scoring of vlm-generative: shared-prompt scores against a per-label loop and against generate().

Targets (issue 4): on tiny VLMs of each family on the CPU, max_abs_diff <= 1e-4 between the shared-prompt
scores and the per-label loop's, and speedup_vs_loop >= 4.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/label_scoring.py [--families qwen2-vl,internvl]
        [--posts 16] [--rounds 5] [--image-size 96] [--work DIR]

For every family a tiny random checkpoint (`make_tiny`) is classified with kind vlm-generative as the Vintern
recipe sets it up (the `vi` prompt, the recipe's four Vietnamese label words, length-normalized scores) on
--posts demo posts in one batch. Three methods, each timed as the median of --rounds runs, all under no_grad:
    shared    `answer_logprobs_cached`: one forward over the prompts and images, cache repeated K times, one
              forward over the K answers (what the kind runs in evaluation);
    loop      `answer_logprobs_loop(every_position=True)`: one full forward of prompts + answer per label
              (K forwards of the whole batch: images and prompt recomputed every time), the head over every
              position as `model(...).logits` gives it: the plain per-label loop, the target's baseline;
    lean loop the same with the head only at the answer positions (`logits_to_keep`), reported beside it:
              with K = 4 labels, K forwards against about one bound the gain at a little under 4x;
    generate  `model.generate` of the answer, greedy, as many new tokens as the longest answer: what a model
              fine-tuned to *write* the label costs, for one answer and no probabilities.
max_abs_diff compares the shared and the loop's per-token log-probabilities. The last line is JSON with the
worst family: the largest difference and the smallest speedups.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mmtune.config import load_config
from mmtune.data.checks import load_posts
from mmtune.demo import make_demo_data
from mmtune.models.label_scoring import answer_logprobs_cached, answer_logprobs_loop
from mmtune.models.vlm_families import family_names
from mmtune.recipes.train import build_model
from mmtune.testing.tiny import make_tiny

LABELS = ["image-sarcasm", "multi-sarcasm", "not-sarcasm", "text-sarcasm"]


def recipe_overrides(model_dir: Path, image_size: int) -> list[str]:
    recipe = load_config(Path(__file__).resolve().parents[1] / "configs" / "vintern-1b-lora-t4.yaml")
    words = ", ".join(f"{label}: {word}" for label, word in recipe.model.vlm.label_words.items())
    return ["model.kind=vlm-generative", f"model.name={model_dir}", "model.vlm.prompt=vi",
            f"model.vlm.label_words={{{words}}}", f"model.vlm.image_size={image_size}",
            f"model.vlm.max_pixels={image_size * image_size}"]


def timed(run: Callable[[], object], rounds: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_family(family: str, work: Path, demo: object, posts: int, rounds: int, image_size: int) -> dict:
    model_dir = make_tiny(family, work / family)
    cfg = load_config(None, recipe_overrides(model_dir, image_size))
    classifier = build_model(cfg, LABELS).eval()
    data = load_posts(demo.train, demo.train_images, cfg.data, labels=LABELS, require_label=True).posts
    examples = classifier.prepare(sorted(data, key=lambda p: -len(p.images))[:posts], train=False)
    batch = classifier.collate(examples, train=False)
    model, answers = classifier.vlm, classifier.answers
    new_tokens = int(answers.mask.sum(-1).max())
    pad_id = classifier.inputs.loaded.tokenizer.pad_token_id
    with torch.no_grad():
        shared = answer_logprobs_cached(model, batch, answers)
        looped = answer_logprobs_loop(model, batch, answers, every_position=True)
        t_shared = timed(lambda: answer_logprobs_cached(model, batch, answers), rounds)
        t_loop = timed(lambda: answer_logprobs_loop(model, batch, answers, every_position=True), rounds)
        t_lean = timed(lambda: answer_logprobs_loop(model, batch, answers), rounds)
        t_generate = timed(lambda: model.generate(**batch, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                                  do_sample=False, pad_token_id=pad_id), rounds)
    return {"family": family, "posts": len(examples), "prompt_tokens": int(batch["input_ids"].shape[1]),
            "answer_tokens": answers.mask.sum(-1).tolist(), "max_abs_diff": float((shared - looped).abs().max()),
            "shared_s": round(t_shared, 4), "loop_s": round(t_loop, 4), "lean_loop_s": round(t_lean, 4),
            "generate_s": round(t_generate, 4), "speedup_vs_loop": round(t_loop / t_shared, 2),
            "speedup_vs_lean_loop": round(t_lean / t_shared, 2), "speedup_vs_generate": round(t_generate / t_shared, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(family_names()))
    parser.add_argument("--posts", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    work = args.work or Path(tempfile.mkdtemp(prefix="label-scoring-"))
    demo = make_demo_data(work / "demo", n_train=40, n_test=4, seed=0, image_size=96, inject_faults=True)
    results = []
    for family in args.families.split(","):
        result = bench_family(family, work, demo, args.posts, args.rounds, args.image_size)
        results.append(result)
        print(json.dumps(result))
    print(json.dumps({"max_abs_diff": max(r["max_abs_diff"] for r in results),
                      "speedup_vs_loop": min(r["speedup_vs_loop"] for r in results),
                      "speedup_vs_generate": min(r["speedup_vs_generate"] for r in results),
                      "speedup_vs_lean_loop": min(r["speedup_vs_lean_loop"] for r in results),
                      "worst_loop_family": min(results, key=lambda r: r["speedup_vs_loop"])["family"]}))


if __name__ == "__main__":
    main()
