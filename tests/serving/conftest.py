"""A tiny trained fusion run, its export, and a live service on a free port (uvicorn in a thread; no httpx here,
so FastAPI's TestClient is not available: requests go through urllib like any client's)."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import uvicorn
from PIL import Image

from mmtune import api
from mmtune.recipes.export import export
from mmtune.recipes.serve import make_service
from tests.training.conftest import demo_small, fusion_config, tiny_models, write_config  # noqa: F401


@pytest.fixture(scope="session")
def tiny_run(demo_small, tiny_models, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("serve-run")
    config = fusion_config(demo_small, tiny_models, root / "run", epochs=1)
    api.fit(api.config(write_config(config, root / "config.yaml")))
    return root / "run"


@pytest.fixture(scope="session")
def tiny_export(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("serve-export") / "export"
    export(tiny_run, out, command="mmtune export run export")
    return out


def png_b64(size=(40, 30), color=(10, 120, 200)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


class Service:
    """A running app: `post` and `get` return (status, parsed JSON body)."""

    def __init__(self, app, port: int) -> None:
        self.app = app
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Service:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the service did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def request(self, path: str, body: bytes | None = None, content_type: str = "application/json",
                timeout: float = 60):
        request = urllib.request.Request(self.url + path, data=body, method="POST" if body is not None else "GET",
                                         headers={"Content-Type": content_type} if body is not None else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def post(self, payload, **options):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        status, raw = self.request("/v1/classify", body, **options)
        return status, json.loads(raw)

    def get(self, path: str):
        status, raw = self.request(path)
        return status, json.loads(raw)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(model: Path, **options) -> Service:
    return Service(make_service(model, **options), free_port())
