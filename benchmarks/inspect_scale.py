"""`mmtune inspect` at scale: wall time and peak memory for growing numbers of posts.

Target (issue 2): 100,000 posts inspected in at most 2 minutes on 2 cores, memory bound by
metadata, growing linearly. Each size runs in a fresh process so its peak RSS is its own.

    python benchmarks/inspect_scale.py [--sizes 10000 30000 100000] [--data benchmarks/_data]

The data (ViMMSD JSON + one distinct JPEG per post, sizes like Facebook memes after downscaling,
a few PNG-behind-.jpg files and panoramas) is generated once and kept under --data (git-ignored).
Its last line is JSON with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZES = [(320, 240), (480, 360), (400, 400), (640, 360), (900, 250)]


def _make_images(args: tuple[Path, int, int]) -> None:
    """Distinct pictures (random low-resolution blocks, upscaled) so that near-duplicates are rare,
    as in real data; a repeated base picture would turn the near-duplicate search quadratic."""
    folder, start, stop = args
    rng = np.random.default_rng(start)
    for index in range(start, stop):
        size = SIZES[index % len(SIZES)]
        blocks = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(blocks).resize(size, Image.Resampling.BILINEAR)
        draw = ImageDraw.Draw(image)
        draw.text((10, 10), f"post {index}", fill=(255, 255, 255))
        fmt = "PNG" if index % 97 == 0 else "JPEG"  # ~1% PNG behind a .jpg name, as in ViMMSD
        image.save(folder / f"{index:06d}.jpg", format=fmt, quality=85)


def make_data(root: Path, n: int) -> tuple[Path, Path]:
    images = root / "images"
    data = root / f"posts-{n}.json"
    images.mkdir(parents=True, exist_ok=True)
    have = len(os.listdir(images))  # a partial folder from an earlier run is completed, not redone
    if have < n:
        step = 2000
        jobs = [(images, s, min(n, s + step)) for s in range(have - have % step, n, step)]
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            list(pool.map(_make_images, jobs))
    if not data.exists():
        rng = np.random.default_rng(0)
        labels = rng.choice(["not-sarcasm", "multi-sarcasm", "image-sarcasm", "text-sarcasm"], size=n,
                            p=[0.56, 0.39, 0.04, 0.01])
        words = "hôm nay trời đẹp quá đi chơi thôi mn ơi lương về rồi 😂 #xuhuong wifi nhanh như rùa".split()
        posts = {}
        for index in range(n):
            length = int(rng.integers(3, 40))
            caption = " ".join(rng.choice(words, size=length)) if index % 4 else f"bài trùng số {index % 500}"
            posts[str(index * 2)] = {"image": f"{index:06d}.jpg", "caption": caption, "label": str(labels[index])}
        data.write_text(json.dumps(posts, ensure_ascii=False), encoding="utf-8")
    return data, images


CHILD = """
import json, resource, sys, time
from pathlib import Path
from mmtune.config import DataConfig
from mmtune.data.audit import InspectRequest, inspect_data
started = time.perf_counter()
report = inspect_data(InspectRequest(Path(sys.argv[1]), Path(sys.argv[2])), DataConfig())
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "posts": report["posts"], "faults": len(report["faults"])}))
"""


def measure(data: Path, images: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", CHILD, str(data), str(images)], capture_output=True, text=True,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--data", type=Path, default=Path(__file__).parent / "_data" / "inspect")
    parser.add_argument("--repeats", type=int, default=1, help="runs per size; the median is reported")
    args = parser.parse_args()
    rows = []
    for n in sorted(args.sizes):
        started = time.perf_counter()
        data, images = make_data(args.data, n)
        print(f"data for {n} posts ready ({time.perf_counter() - started:.0f} s)", flush=True)
        runs = [measure(data, images) for _ in range(args.repeats)]
        seconds = float(np.median([r["seconds"] for r in runs]))
        rss = float(np.median([r["peak_rss_mb"] for r in runs]))
        rows.append({"posts": n, "seconds": round(seconds, 1), "posts_per_s": round(n / seconds),
                     "peak_rss_mb": round(rss)})
        print(f"{n:>7} posts: {seconds:6.1f} s  {n / seconds:7.0f} posts/s  peak RSS {rss:6.0f} MB", flush=True)
    small, large = rows[0], rows[-1]
    # 1.0 = perfectly linear time; RSS per extra post tells that pixels are not kept.
    linearity = (large["seconds"] / large["posts"]) / (small["seconds"] / small["posts"])
    rss_per_post_kb = (large["peak_rss_mb"] - small["peak_rss_mb"]) * 1024 / max(1, large["posts"] - small["posts"])
    budget_ratio = large["seconds"] / 120 * 100_000 / large["posts"]
    print(json.dumps({"rows": rows, "time_per_post_ratio_large_vs_small": round(linearity, 2),
                      "rss_kb_per_extra_post": round(rss_per_post_kb, 2),
                      "fraction_of_2min_budget_at_100k": round(budget_ratio, 2), "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
