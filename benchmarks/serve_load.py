"""`mmtune serve` under load: 32 concurrent clients against the demo run, dynamic batching against batch 1, and
the served posts/s against `mmtune predict`'s posts/s on the same posts (issue 15's target: >= 0.8 with batching).

    PYTHONPATH=src python benchmarks/serve_load.py [--model EXPORT] [--seconds 30] [--clients 32]
                                                  [--rounds 3] [--predict-posts 256] [--work DIR]

Without --model it builds the demo run cheaply once (the demo config on 120 synthetic training posts, 3 epochs)
and exports it, in --work (kept between invocations). Each setting is a real `mmtune serve` process; the
clients run in a child process of their own (raw asyncio HTTP/1.1 with keep-alive: no client library, a few
dozen microseconds of CPU per request, printed) so that they do not share the service's interpreter. A round
runs every setting for --seconds, then the predict path: the export's Predictor (what `mmtune predict EXPORT`
runs, its batch size, feature cache off as in the service) on --predict-posts posts built the same way; model
loading and file reading are not timed, so the ratio is against predict's best case. Rounds alternate the
settings (drift on a shared machine hits each alike); the medians and ratios are printed, with the load average,
per wall second and per CPU second of the process doing the work (steadier when other jobs share the cores).

The predict path runs twice a round: in the main thread, as `mmtune predict` does, and in a worker thread, as the
service runs its model (asyncio.to_thread). On a 2-core machine shared with a dozen busy processes these differ
by up to 10x: torch's 2-thread OpenMP team in the main thread spins at every barrier while its other thread
waits for a core (1356 vs 89 ms CPU per post at batch 1, 300 vs 91 at batch 16; one thread: 62 and 74), while a
worker thread's parallel regions ran as one thread. The served/predict ratio against the worker thread is the
like-for-like one.

Posts: the demo data's captions and images (base64 PNG, one image a post); every request's caption carries a
unique tag, so neither the service nor the predict path ever reuses a cached text feature.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"dynamic (max 32, 10 ms)": (32, 10), "batch 1": (1, 0)}
# The predict path as `mmtune predict` runs it (the main thread) and in a worker thread, as the service runs its
# model: see the module's docstring for why both.
PREDICT = {"predict (main thread)": False, "predict (worker thread)": True}


# ---------------------------------------------------------------------------------------------- the model


def demo_export(work: Path) -> Path:
    """The demo config trained on small demo data and exported (built once in `work`)."""
    from mmtune.demo import make_demo_data
    from mmtune.recipes.demo import demo_config
    from mmtune.recipes.export import export
    from mmtune.recipes.train import train

    out = work / "demo-export"
    if not out.is_dir():
        demo = make_demo_data(work / "demo-data", n_train=120, n_test=40, seed=0, inject_faults=False)
        train(demo_config(work / "demo-run", demo, ["train.epochs=3", f"train.cache_dir={work / 'cache'}"]))
        export(work / "demo-run", out, command="benchmarks/serve_load.py")
    return out


def post_pool(work: Path) -> list[tuple[str, str, str]]:
    """(caption, base64 image, image suffix) of the demo data's posts (each with one image)."""
    pool = []
    for split, images in (("vimmsd-train.json", "train-images"), ("vimmsd-public-test.json", "test-images")):
        for record in json.loads((work / "demo-data" / split).read_text(encoding="utf-8")).values():
            image = work / "demo-data" / images / record["image"]
            pool.append((record["caption"], base64.b64encode(image.read_bytes()).decode(), image.suffix))
    return pool


def tagged(caption: str, tag: str, index: int) -> str:
    return f"{caption} #{tag}{index}"


# ---------------------------------------------------------------------------------------------- predict


def predict_rate(predictor, pool: list[tuple[str, str, str]], folder: Path, tag: str,  # noqa: ANN001
                 count: int, in_thread: bool) -> tuple[float, float]:
    """(posts per wall second, posts per CPU second) of the predict path's model work on `count` posts built as
    the clients build them."""
    from mmtune.data.checks import load_posts

    images = folder / "images"
    images.mkdir(parents=True)
    records = {}
    for index in range(count):
        caption, image, suffix = pool[index % len(pool)]
        name = f"{index % len(pool)}{suffix}"
        if not (images / name).exists():
            (images / name).write_bytes(base64.b64decode(image))
        records[str(index)] = {"image": name, "caption": tagged(caption, tag, index)}
    data = folder / "posts.json"
    data.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    posts = load_posts(data, images, predictor.scorers[0].config.data, labels=predictor.labels).require_posts()
    started, cpu = time.perf_counter(), time.process_time()
    if in_thread:  # as the service runs its model: see the module's docstring
        with concurrent.futures.ThreadPoolExecutor(1) as pool_:
            pool_.submit(predictor.predict, posts).result()
    else:
        predictor.predict(posts)
    return count / (time.perf_counter() - started), count / (time.process_time() - cpu)


# ---------------------------------------------------------------------------------------------- the service


class Served:
    """`mmtune serve MODEL` in a process of its own."""

    def __init__(self, model: Path, port: int, max_batch: int, max_wait_ms: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        with log.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mmtune", "serve", str(model), "--port", str(port), "--max-batch",
                 str(max_batch), "--max-wait-ms", str(max_wait_ms)], stdout=sink, stderr=sink,
                env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        deadline = time.monotonic() + 300
        while True:
            try:
                self.health()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mmtune serve on port {port} did not start") from None
                time.sleep(0.5)

    def health(self) -> dict:
        with urllib.request.urlopen(self.url + "/health", timeout=5) as response:
            return json.loads(response.read())

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the service process, all its threads."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------------------------------------- the clients


async def _client(port: int, pool: list[tuple[str, str, str]], tag: str, counter: list[int], stop: float,
                  latencies: list[float], errors: list[int], get: str | None) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < stop:
            index = counter[0]
            counter[0] += 1
            request, expected = (_get(get), b"") if get else (_classify(pool, tag, index), b'"probabilities"')
            started = time.perf_counter()
            writer.write(request)
            status, answer = await _response(reader)
            latencies.append(time.perf_counter() - started)
            errors[0] += status != 200 or expected not in answer
    finally:
        writer.close()


def _classify(pool: list[tuple[str, str, str]], tag: str, index: int) -> bytes:
    caption, image, _ = pool[index % len(pool)]
    body = f'{{"caption": {json.dumps(tagged(caption, tag, index))}, "images": ["{image}"]}}'.encode()
    return (f"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


def client_main(args: argparse.Namespace) -> None:
    """The clients' process: prints {"latencies", "errors", "seconds", "cpu_s"} as one JSON line."""
    pool = [tuple(item) for item in json.loads(Path(args.pool).read_text(encoding="utf-8"))]
    latencies: list[float] = []
    errors, counter = [0], [0]

    async def run() -> float:
        started = time.monotonic()
        stop = started + args.seconds
        await asyncio.gather(*(_client(args.port, pool, args.tag, counter, stop, latencies, errors, args.get)
                               for _ in range(args.clients)))
        return time.monotonic() - started

    seconds = asyncio.run(run())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"latencies": latencies, "errors": errors[0], "seconds": seconds,
                      "cpu_s": usage.ru_utime + usage.ru_stime}))


def load(served: Served, pool_file: Path, tag: str, seconds: float, clients: int,
         get: str | None = None) -> dict[str, float]:
    before, cpu = served.health(), served.cpu_seconds()
    out = subprocess.run([sys.executable, __file__, "client", "--port", str(served.port), "--pool", str(pool_file),
                          "--tag", tag, "--seconds", str(seconds), "--clients", str(clients),
                          *(["--get", get] if get else [])], check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    after, cpu = served.health(), served.cpu_seconds() - cpu
    ordered = sorted(result["latencies"])
    requests = len(ordered)
    return {"posts_per_s": requests / result["seconds"], "posts_per_cpu_s": requests / cpu,
            "p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[int(0.99 * (requests - 1))], "errors": result["errors"], "requests": requests,
            "client_cpu_us": 1e6 * result["cpu_s"] / requests,
            "posts_per_forward": (after["posts"] - before["posts"]) / max(1, after["forwards"] - before["forwards"]),
            "model_busy": (after["model_busy_s"] - before["model_busy_s"]) / result["seconds"]}


def stage_costs(served: Served, pool: list[tuple[str, str, str]], pool_file: Path) -> str:
    """Where a served post's CPU goes besides the model, once: the HTTP layer (uvicorn + FastAPI on a GET
    /v1/labels, per request, in the service process) and reading a classify body (JSON, base64, the image
    into memory and its checked decode; in this process)."""
    from mmtune.serving.app import read_posts
    from mmtune.serving.requests import Limits

    http = load(served, pool_file, "http-", 5, 32, get="/v1/labels")
    bodies = [_classify(pool, "stage-", index).partition(b"\r\n\r\n")[2] for index in range(len(pool))]
    cpu = time.process_time()
    for body in bodies:
        read_posts(body, "application/json", Limits())[2].close()
    read_us = 1e6 * (time.process_time() - cpu) / len(bodies)
    return (f"per request, besides the model: HTTP layer {1e6 / http['posts_per_cpu_s']:.0f} us of service CPU "
            f"({http['posts_per_s']:.0f} GET/s), reading a body {read_us:.0f} us")


# ---------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, help="an export folder (default: the demo run, built once and exported)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mmtune-serve-load")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--predict-posts", type=int, default=64)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from mmtune.recipes.exported import load_export

    args.work.mkdir(parents=True, exist_ok=True)
    demo = demo_export(args.work)  # with --model too: the posts are the demo data's
    model = args.model or demo
    pool = post_pool(args.work)
    pool_file = args.work / "pool.json"
    pool_file.write_text(json.dumps(pool), encoding="utf-8")
    services = {name: Served(model, free_port(), batch, wait, args.work / "services.log")
                for name, (batch, wait) in SETTINGS.items()}
    predictor = load_export(model, for_service=True)
    rates: dict[str, list[float]] = {name: [] for name in [*SETTINGS, *PREDICT]}
    per_cpu: dict[str, list[float]] = {name: [] for name in [*SETTINGS, *PREDICT]}
    scratch = Path(tempfile.mkdtemp(prefix="serve-load-"))
    try:
        print(stage_costs(services["batch 1"], pool, pool_file), flush=True)
        for round_ in range(args.rounds):  # ABC ABC ...: drift on a shared machine hits every setting alike
            for number, (name, served) in enumerate(services.items()):
                result = load(served, pool_file, f"r{round_}s{number}-", args.seconds, args.clients)
                rates[name].append(result["posts_per_s"])
                per_cpu[name].append(result["posts_per_cpu_s"])
                print(f"round {round_} {name}: {result['posts_per_s']:.1f} posts/s "
                      f"({result['posts_per_cpu_s']:.2f} per service CPU s), p50 {result['p50_ms']:.0f} ms, "
                      f"p99 {result['p99_ms']:.0f} ms, {result['errors']} errors, {result['requests']} requests, "
                      f"{result['posts_per_forward']:.1f} posts/forward, model busy {result['model_busy']:.0%}, "
                      f"client CPU "
                      f"{result['client_cpu_us']:.0f} us/request; load {os.getloadavg()[0]:.1f}", flush=True)
            for name, in_thread in PREDICT.items():
                rate, cpu_rate = predict_rate(predictor, pool, scratch / f"round-{round_}-{in_thread}",
                                              f"r{round_}p{in_thread:d}-", args.predict_posts, in_thread)
                rates[name].append(rate)
                per_cpu[name].append(cpu_rate)
                print(f"round {round_} {name}: {rate:.2f} posts/s ({cpu_rate:.2f} per CPU s); "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        for served in services.values():
            served.close()
    for unit, figures in (("posts/s", rates), ("posts per CPU s", per_cpu)):
        medians = {name: statistics.median(values) for name, values in figures.items()}
        print(f"medians ({unit}): {', '.join(f'{k} {v:.2f}' for k, v in medians.items())}", flush=True)
        for base in PREDICT:
            ratios = ", ".join(f"{name} {medians[name] / medians[base]:.2f}" for name in SETTINGS)
            per_round = "; ".join(", ".join(f"{figures[name][r] / figures[base][r]:.2f}" for name in SETTINGS)
                                  for r in range(args.rounds))
            print(f"  served / {base} ({unit}): {ratios} (per round: {per_round})", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        client_parser = argparse.ArgumentParser()
        for option, kind in (("--port", int), ("--pool", str), ("--tag", str), ("--seconds", float),
                             ("--clients", int)):
            client_parser.add_argument(option, type=kind, required=True)
        client_parser.add_argument("--get", help="GET this path instead of posting posts (the HTTP layer's cost)")
        client_main(client_parser.parse_args(sys.argv[2:]))
    else:
        main()
