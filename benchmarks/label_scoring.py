"""Label scoring of vlm-generative: shared-prompt scores against a per-label loop and against generate().

Targets (issue 4): on tiny VLMs of each family on the CPU, max_abs_diff <= 1e-4 between the shared-prompt
scores and the per-label loop's, and speedup_vs_loop >= 4. Issue 16: packed scoring (what the kind runs now)
equal to the loop, and its training step under gradient checkpointing against the per-label loop and against
one forward and backward over the prompts alone (the limit).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/label_scoring.py [--families qwen2-vl,internvl]
        [--posts 16] [--rounds 5] [--image-size 96] [--work DIR]

For every family a tiny random checkpoint (`make_tiny`) is classified with kind vlm-generative as the Vintern
recipe sets it up (the `vi` prompt, the recipe's four Vietnamese label words, length-normalized scores) on
--posts demo posts in one batch. The methods, each timed as the median of --rounds interleaved runs (wall and
CPU seconds), all under no_grad:
    shared    `answer_logprobs_cached`: one forward over the prompts and images, cache repeated K times, one
              forward over the K answers (what the kind ran before packed scoring; now its fallback);
    loop      `answer_logprobs_loop(every_position=True)`: one full forward of prompts + answer per label
              (K forwards of the whole batch: images and prompt recomputed every time), the head over every
              position as `model(...).logits` gives it: the plain per-label loop, the target's baseline;
    lean loop the same with the head only at the answer positions (`logits_to_keep`), reported beside it:
              with K = 4 labels, K forwards against about one bound the gain at a little under 4x;
    generate  `model.generate` of the answer, greedy, as many new tokens as the longest answer: what a model
              fine-tuned to *write* the label costs, for one answer and no probabilities.
    plain     one plain forward over the same prompts and images, `model(**batch).logits` (the head over every
              position): the cost of reading the prompts once, the limit shared scoring is held to (issue 14:
              shared_s / plain_s <= 1.3);
    prompt    the same forward with the head at the last position only: what the shared method pays before its
              answers, reported beside it.
    packed    `answer_logprobs_packed`: one forward over each prompt followed by the K answers under a 4D mask
              (no cache): what the kind runs, in training and inference (packed_vs_shared < 1 on every family).
max_abs_diff compares the shared and the loop's per-token log-probabilities (max_abs_diff_packed: packed against
the loop).

Training (issue 16; `--no-train` skips it): the kind as the T4 recipes train it (LoRA on the language model), one
step = the class scores' cross-entropy, forward and backward (no optimizer step, the same for every method):
    ckpt_packed  gradient checkpointing on, packed scoring (what the kind runs);
    ckpt_loop    gradient checkpointing on, one forward per label (what it ran before: the cache is off);
    ckpt_plain   gradient checkpointing on, one plain forward and backward over the prompts alone (head at every
                 position, mean log-probability as the loss): the limit packed training is held to;
    ckpt_prompt  the same with the head at the last position only (what a classifier on the prompt pays);
    packed       no checkpointing, packed scoring;
    shared       no checkpointing, the shared-prompt cache (K-times repeated) scoring.
The last line is JSON with the worst family: the largest differences and the smallest speedups.

`--real` runs a real language model instead of the tiny families: SmolLM2-135M-Instruct (49,152-token vocabulary,
its own ChatML template) from the `real` extra (mmtune.testing.real), without generate and the lean loop
(defaults: 4 posts, 3 rounds; a 135M model on a shared CPU takes seconds per forward):

    HF_HUB_OFFLINE=1 python benchmarks/label_scoring.py --real [--posts 4] [--rounds 3] [--train-posts 2]

`--real Gemma-3-270M` runs Gemma-3-270M instead (262,144-token vocabulary, Gemma 3's turn format).
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
from mmtune.models.label_scoring import (
    Answers,
    answer_logprobs_cached,
    answer_logprobs_loop,
    answer_logprobs_packed,
    reduce_scores,
)
from mmtune.models.vlm_families import family_names
from mmtune.recipes.train import build_model
from mmtune.testing.real import MODELS, SMOLLM2, real_model_folder
from mmtune.testing.tiny import make_tiny

LABELS = ["image-sarcasm", "multi-sarcasm", "not-sarcasm", "text-sarcasm"]


def recipe_overrides(model_dir: Path, image_size: int) -> list[str]:
    recipe = load_config(Path(__file__).resolve().parents[1] / "configs" / "vintern-1b-lora-t4.yaml")
    words = ", ".join(f"{label}: {word}" for label, word in recipe.model.vlm.label_words.items())
    return ["model.kind=vlm-generative", f"model.name={model_dir}", "model.vlm.prompt=vi",
            f"model.vlm.label_words={{{words}}}", f"model.vlm.image_size={image_size}",
            f"model.vlm.max_pixels={image_size * image_size}"]


def timed(methods: dict[str, Callable[[], object]], rounds: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each method. Rounds are interleaved (every method once per round), so a change
    in the machine's load mid-run falls on all methods alike; CPU time (this process, all threads) is what the work
    costs on a machine shared with other jobs."""
    for run in methods.values():
        run()  # warm-up
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, run in methods.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: (statistics.median(w for w, _ in got), statistics.median(c for _, c in got))
            for name, got in times.items()}


def prepared(model_dir: Path, demo: object, posts: int, image_size: int, *overrides: str, train: bool = False
             ) -> tuple[torch.nn.Module, dict, torch.Tensor]:
    """The classifier of the recipe's setup (plus `overrides`), one batch of `posts` posts (those with the most
    images first) and their targets."""
    cfg = load_config(None, [*recipe_overrides(model_dir, image_size), *overrides])
    torch.manual_seed(0)
    classifier = build_model(cfg, LABELS).train(train)
    data = load_posts(demo.train, demo.train_images, cfg.data, labels=LABELS, require_label=True).posts
    examples = classifier.prepare(sorted(data, key=lambda p: -len(p.images))[:posts], train=train)
    return classifier, classifier.collate(examples, train=train), torch.tensor([e.target for e in examples])


def bench_family(family: str, model_dir: Path, demo: object, posts: int, rounds: int, image_size: int,
                 with_generate: bool = True) -> dict:
    classifier, batch, _ = prepared(model_dir, demo, posts, image_size)
    model, answers = classifier.vlm, classifier.answers
    new_tokens = int(answers.mask.sum(-1).max())
    pad_id = classifier.inputs.loaded.tokenizer.pad_token_id
    with torch.no_grad():
        shared = answer_logprobs_cached(model, batch, answers)
        looped = answer_logprobs_loop(model, batch, answers, every_position=True)
        packed = answer_logprobs_packed(model, batch, answers)
        methods: dict[str, Callable[[], object]] = {
            "shared": lambda: answer_logprobs_cached(model, batch, answers),
            "packed": lambda: answer_logprobs_packed(model, batch, answers),
            "plain": lambda: model(**batch, use_cache=False).logits,
            "prompt": lambda: model(**batch, use_cache=True, logits_to_keep=1).logits,
            "loop": lambda: answer_logprobs_loop(model, batch, answers, every_position=True)}
        if with_generate:
            methods["lean_loop"] = lambda: answer_logprobs_loop(model, batch, answers)
            methods["generate"] = lambda: model.generate(**batch, max_new_tokens=new_tokens,
                                                         min_new_tokens=new_tokens, do_sample=False,
                                                         pad_token_id=pad_id)
        t = timed(methods, rounds)
    wall = {name: value[0] for name, value in t.items()}
    result = {"family": family, "vocabulary": int(model.get_output_embeddings().weight.shape[0]),
              "posts": int(batch["input_ids"].shape[0]), "prompt_tokens": int(batch["input_ids"].shape[1]),
              "answer_tokens": answers.mask.sum(-1).tolist(), "max_abs_diff": float((shared - looped).abs().max()),
              "max_abs_diff_packed": float((packed - looped).abs().max()),
              **{f"{name}_s": round(value, 4) for name, value in wall.items()},
              "shared_vs_plain": round(wall["shared"] / wall["plain"], 3),
              "packed_vs_shared": round(wall["packed"] / wall["shared"], 3),
              "speedup_vs_loop": round(wall["loop"] / wall["shared"], 2),
              "cpu_s": {name: round(value[1], 3) for name, value in t.items()},
              "cpu_shared_vs_plain": round(t["shared"][1] / t["plain"][1], 3),
              "cpu_speedup_vs_loop": round(t["loop"][1] / t["shared"][1], 2)}
    if with_generate:
        result |= {"speedup_vs_lean_loop": round(wall["lean_loop"] / wall["shared"], 2),
                   "speedup_vs_generate": round(wall["generate"] / wall["shared"], 2)}
    return result


def bench_training(model_dir: Path, demo: object, posts: int, rounds: int, image_size: int) -> dict:
    """Median seconds of one training step (forward + backward) of each method (module docstring)."""
    lora = ("model.lora.enabled=true", "model.lora.dropout=0.0")
    checkpointed, batch, targets = prepared(model_dir, demo, posts, image_size, *lora,
                                            "model.gradient_checkpointing=true", train=True)
    plain_model, _, _ = prepared(model_dir, demo, posts, image_size, *lora, train=True)
    answers = checkpointed.answers

    def step(classifier: torch.nn.Module, score: Callable[..., torch.Tensor]) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            classifier.zero_grad(set_to_none=True)
            logprobs = score(classifier.vlm, batch, answers)
            torch.nn.functional.cross_entropy(reduce_scores(logprobs, answers, "mean"), targets).backward()
            return logprobs.detach()
        return run

    def prompts_only(keep: int) -> Callable[[], None]:
        def run() -> None:
            checkpointed.zero_grad(set_to_none=True)
            logits = checkpointed.vlm(**batch, use_cache=False, logits_to_keep=keep).logits
            (-logits.float().log_softmax(-1).mean()).backward()
        return run

    methods: dict[str, Callable[[], object]] = {
        "ckpt_packed": step(checkpointed, answer_logprobs_packed), "ckpt_loop": step(checkpointed, loop_scores),
        "ckpt_plain": prompts_only(0), "ckpt_prompt": prompts_only(1),
        "packed": step(plain_model, answer_logprobs_packed), "shared": step(plain_model, answer_logprobs_cached)}
    difference = float((methods["ckpt_packed"]() - methods["ckpt_loop"]()).abs().max())
    wall = {name: value[0] for name, value in timed(methods, rounds).items()}
    return {"train_posts": int(batch["input_ids"].shape[0]), "train_max_abs_diff": difference,
            **{f"train_{name}_s": round(value, 4) for name, value in wall.items()},
            "train_ckpt_speedup_vs_loop": round(wall["ckpt_loop"] / wall["ckpt_packed"], 2),
            "train_ckpt_packed_vs_plain": round(wall["ckpt_packed"] / wall["ckpt_plain"], 3),
            "train_ckpt_packed_vs_prompt": round(wall["ckpt_packed"] / wall["ckpt_prompt"], 3),
            "train_packed_vs_shared": round(wall["packed"] / wall["shared"], 3)}


def loop_scores(model: torch.nn.Module, batch: dict, answers: Answers) -> torch.Tensor:
    return answer_logprobs_loop(model, batch, answers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(family_names()))
    parser.add_argument("--real", nargs="?", const=SMOLLM2.name, choices=list(MODELS), default=None,
                        help="a real model instead of the tiny families (default SmolLM2-135M-Instruct)")
    parser.add_argument("--posts", type=int, default=None, help="default 16 (tiny) or 4 (--real)")
    parser.add_argument("--rounds", type=int, default=None, help="default 5 (tiny) or 3 (--real)")
    parser.add_argument("--train-posts", type=int, default=None, help="posts in a training step (default: --posts)")
    parser.add_argument("--no-train", action="store_true", help="inference methods only")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    posts, rounds = args.posts or (4 if args.real else 16), args.rounds or (3 if args.real else 5)
    torch.manual_seed(0)
    work = args.work or Path(tempfile.mkdtemp(prefix="label-scoring-"))
    demo = make_demo_data(work / "demo", n_train=40, n_test=4, seed=0, image_size=96, inject_faults=True)
    models = ([(args.real, real_model_folder(MODELS[args.real]))] if args.real else
              [(family, make_tiny(family, work / family)) for family in args.families.split(",")])
    results = []
    for name, folder in models:
        result = bench_family(name, folder, demo, posts, rounds, args.image_size, with_generate=not args.real)
        if not args.no_train:
            result |= bench_training(folder, demo, args.train_posts or posts, rounds, args.image_size)
        results.append(result)
        print(json.dumps(result))
    summary = {"max_abs_diff": max(r["max_abs_diff"] for r in results),
               "max_abs_diff_packed": max(r["max_abs_diff_packed"] for r in results),
               "packed_vs_shared": max(r["packed_vs_shared"] for r in results),
               "shared_vs_plain": max(r["shared_vs_plain"] for r in results),
               "cpu_shared_vs_plain": max(r["cpu_shared_vs_plain"] for r in results),
               "speedup_vs_loop": min(r["speedup_vs_loop"] for r in results),
               "worst_loop_family": min(results, key=lambda r: r["speedup_vs_loop"])["family"]}
    if not args.no_train:
        summary |= {"train_max_abs_diff": max(r["train_max_abs_diff"] for r in results),
                    "train_ckpt_speedup_vs_loop": min(r["train_ckpt_speedup_vs_loop"] for r in results),
                    "train_ckpt_packed_vs_plain": max(r["train_ckpt_packed_vs_plain"] for r in results),
                    "train_ckpt_packed_vs_prompt": max(r["train_ckpt_packed_vs_prompt"] for r in results),
                    "train_packed_vs_shared": max(r["train_packed_vs_shared"] for r in results)}
    if not args.real:
        summary |= {"speedup_vs_generate": min(r["speedup_vs_generate"] for r in results),
                    "speedup_vs_lean_loop": min(r["speedup_vs_lean_loop"] for r in results)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
