"""Posts per second through `mmtune serve` on the tiny fusion model: dynamic batching against batch 1, same run,
and against `mmtune predict`'s model path (the export's Predictor on the same post, in this process).

    PYTHONPATH=src python benchmarks/serve_throughput.py [--seconds 8] [--clients 32] [--rounds 3]

Trains a 1-epoch tiny fusion run on small demo data, exports it, then for each setting starts the service (uvicorn
in a thread), lets `clients` threads of a child process post one post each (caption + a 48 px image) in a loop
for `seconds`, and prints posts/s, p50/p99 latency and errors; then 2048 copies of the same post, read from a JSONL
file, go through the predict path's Predictor (model loading and file reading not counted). Rounds alternate the
three; the medians and the ratio served / predict posts/s are printed.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmtune import api  # noqa: E402
from mmtune.data.checks import load_posts  # noqa: E402
from mmtune.demo import make_demo_data  # noqa: E402
from mmtune.recipes.export import export  # noqa: E402
from mmtune.recipes.exported import load_export  # noqa: E402
from mmtune.recipes.serve import make_service  # noqa: E402
from mmtune.testing.tiny import make_tiny  # noqa: E402
from tests.serving.conftest import Service, free_port, png_b64  # noqa: E402
from tests.training.conftest import fusion_config, write_config  # noqa: E402

CAPTION = "hôm nay trời đẹp quá 😂"
IMAGE = png_b64((48, 48))


def predict_rate(export_dir: Path, root: Path, count: int = 2048) -> float:
    """posts/s of the predict path's model work (prepare, collate, forward; the export's batch size) on `count`
    copies of the post. Reading the file is not timed: for files this size load_posts starts a process pool,
    seconds that say nothing about the model, and the service reads no file."""
    root.mkdir()
    (root / "bench-images").mkdir()
    (root / "bench-images" / "p.png").write_bytes(base64.b64decode(IMAGE))
    data = root / "bench.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "caption": CAPTION, "image": "p.png"}) + "\n"
                            for i in range(count)), encoding="utf-8")
    predictor = load_export(export_dir)
    posts = load_posts(data, root / "bench-images", predictor.scorers[0].config.data,
                       labels=predictor.labels).require_posts()
    started = time.perf_counter()
    predictor.predict(posts)
    return count / (time.perf_counter() - started)


def _clients(service: Service, seconds: float, clients: int, pipe: Connection) -> None:
    """Runs in a child process: the clients' HTTP and JSON work does not compete with the service for its GIL."""
    latencies: list[float] = []
    errors = [0]
    stop = time.monotonic() + seconds
    post = {"caption": CAPTION, "images": [IMAGE]}

    def client() -> None:
        while time.monotonic() < stop:
            started = time.perf_counter()
            status, _ = service.post(post)
            latencies.append(time.perf_counter() - started)
            errors[0] += status != 200

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pipe.send((latencies, errors[0], time.monotonic() - started))


def load(service: Service, seconds: float, clients: int) -> dict[str, float]:
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_clients, args=(service, seconds, clients, send))
    child.start()
    latencies, errors, elapsed = receive.recv()
    child.join()
    ordered = sorted(latencies)
    return {"posts_per_s": len(latencies) / elapsed, "p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))], "errors": errors,
            "forwards": service.get("/health")[1]["forwards"], "requests": len(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    demo = make_demo_data(root / "demo", n_train=96, n_test=24, seed=1, image_size=48, inject_faults=False)
    tiny = {family: make_tiny(family, root / family) for family in ("bert", "vit")}
    api.fit(api.config(write_config(fusion_config(demo, tiny, root / "run", epochs=1), root / "config.yaml")))
    export(root / "run", root / "export")
    settings = {"dynamic (max 32, 10 ms)": (32, 10), "batch 1": (1, 0)}
    services = {name: Service(make_service(root / "export", max_batch=batch, max_wait_ms=wait), free_port())
                for name, (batch, wait) in settings.items()}
    for service in services.values():
        service.__enter__()
    rates: dict[str, list[float]] = {name: [] for name in [*settings, "predict"]}
    for round_ in range(args.rounds):  # ABC ABC ...: drift on a shared machine hits every setting alike
        for name, service in services.items():
            result = load(service, args.seconds, args.clients)
            rates[name].append(result["posts_per_s"])
            print(f"round {round_} {name}: {result['posts_per_s']:.1f} posts/s, p50 {result['p50_ms']:.0f} ms, "
                  f"p99 {result['p99_ms']:.0f} ms, {result['errors']} errors, {result['requests']} requests",
                  flush=True)
        rates["predict"].append(predict_rate(root / "export", root / f"round-{round_}"))
        print(f"round {round_} predict path: {rates['predict'][-1]:.1f} posts/s", flush=True)
    for service in services.values():
        service.__exit__()
    medians = {name: statistics.median(values) for name, values in rates.items()}
    ratios = ", ".join(f"{name} {medians[name] / medians['predict']:.2f}" for name in settings)
    print(f"medians: {', '.join(f'{k} {v:.1f} posts/s' for k, v in medians.items())}; served / predict: {ratios}",
          flush=True)

if __name__ == "__main__":
    main()
