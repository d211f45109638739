"""ONNX Runtime for the forward of a frozen image tower in the feature-cache pass (`train.extract_runtime`).

On CPU, ONNX Runtime ran EfficientNet-Lite0 4-5x faster than torch's channels-last forward at one thread, with
features within 2e-5 of torch's (benchmarks/RESULTS.md, issue 16). The tower's encoder is exported once per
(identity, preprocessing signature, torch and onnx versions) into `<feature cache root>/onnx/<key>/`: an export
(1.0-1.4 s for EfficientNet-Lite0) costs as long as the ONNX pass over ~60 posts, so later passes reuse it. Any
failure to export or to open the graph (an operator the exporter or the runtime lacks) logs one line and leaves
the pass to torch: the runtime is a speed-up, never a reason for a run to fail.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from mmtune.errors import InputError

log = logging.getLogger(__name__)

_MODEL_FILE = "encoder.onnx"


def available() -> bool:
    """onnxruntime runs the graph; onnx is what torch.onnx.export writes it with."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def check_runtime(setting: str) -> None:
    """train.extract_runtime=onnx without onnxruntime and onnx: one line, before any model or data is loaded."""
    if setting == "onnx" and not available():
        raise InputError("train.extract_runtime: onnx needs the PyPI packages onnxruntime and onnx "
                         "(pip install mmtune[onnx]), or set it to auto or torch")


def choose_runtime(setting: str, tower: Any) -> str:
    """"onnx" or "torch" for the feature pass of `tower`. auto: ONNX Runtime for a frozen tower whose forward
    would run on the CPU, when onnxruntime and onnx are installed; onnx: the same, an error when they are not."""
    check_runtime(setting)
    if setting == "torch" or tower.trainable or _device(tower).type != "cpu":
        return "torch"
    return "onnx" if available() else "torch"


def _device(module: torch.nn.Module) -> torch.device:
    return next((p.device for p in module.parameters()), torch.device("cpu"))


class OnnxImageEncode:
    """`ImageTower.encode` with the encoder's forward in an ONNX Runtime session: prepared inputs ->
    [n_posts, dim], the per-post mean of the tower's own pooling."""

    def __init__(self, tower: Any, session: Any) -> None:
        self.tower = tower
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def __call__(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        pixels, counts = inputs["pixel_values"], inputs["counts"]
        if pixels.shape[0] == 0:
            return torch.zeros(counts.shape[0], self.tower.dim)
        # The graph takes NCHW float32: a channels-last tensor would be copied back by .contiguous().
        array = pixels.to(torch.float32).contiguous().numpy()
        encoded = torch.from_numpy(self.session.run(None, {self.input_name: array})[0])
        return self.tower.pool(encoded, counts)


def onnx_encode(tower: Any, cache_root: Path | None) -> OnnxImageEncode | None:
    """The tower's encode on ONNX Runtime, its graph exported into `cache_root/onnx` (None: a temporary folder);
    None, with one logged line, when the export or the session fails."""
    try:
        if cache_root is None:
            with tempfile.TemporaryDirectory(prefix="mmtune-onnx-") as folder:
                # The session holds the graph in memory: the file may go once it is open.
                return OnnxImageEncode(tower, _session(_exported(tower, Path(folder))))
        return OnnxImageEncode(tower, _session(_exported(tower, cache_root / "onnx")))
    except Exception as exc:  # any exporter or runtime failure: torch encodes instead
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning(f"train.extract_runtime: ONNX Runtime not used for {tower.identity.split('|')[0]} "
                    f"({type(exc).__name__}: {reason[:200]}); encoding with torch")
        return None


def export_key(tower: Any) -> str:
    """What the exported graph depends on: the weights (identity), the tower's settings and the exporter."""
    import onnx

    blob = json.dumps({"identity": tower.identity, "signature": tower.signature(), "torch": torch.__version__,
                       "onnx": onnx.__version__}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def _exported(tower: Any, root: Path) -> Path:
    """root/<key>/encoder.onnx, exported when missing. Written in a scratch folder renamed into place, so that a
    killed export leaves no half-written graph and two processes exporting at once both end with a whole one
    (the folder also holds any external weight files a graph over 2 GB is given)."""
    final = root / export_key(tower)
    if (final / _MODEL_FILE).is_file():
        return final / _MODEL_FILE
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
    try:
        _export(tower, scratch / _MODEL_FILE)
        try:
            os.rename(scratch, final)
        except OSError:
            if not (final / _MODEL_FILE).is_file():  # not another process's export won the race
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final / _MODEL_FILE


def _export(tower: Any, path: Path) -> None:
    """The encoder, traced in eval mode on one blank image, with a dynamic batch axis.

    Why the TorchScript exporter (dynamo=False): the dynamo one needs onnxscript, one more package; this one
    ships with torch 2.13 and exports the encoders measured (EfficientNet-Lite0, HF ConvNeXt/ViT/CLIP/SigLIP)."""
    encoder = tower.encoder
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes are not the user's
            torch.onnx.export(encoder, (tower.blank().float().contiguous(),), str(path), input_names=["pixels"],
                              output_names=["features"], dynamic_axes={"pixels": {0: "n"}, "features": {0: "n"}},
                              dynamo=False)
    finally:
        encoder.train(was_training)


def _session(path: Path) -> Any:
    """A CPU session with torch's thread count (what the user or torch set for this process)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # Why no spinning: idle intra-op threads that spin take the cores the decoding workers need. Measured on the
    # shared 2-core machine (load 4.6, EfficientNet-Lite0, batches of 32): 2 threads 78 posts/s without spinning
    # vs 66 with it, and less CPU per post; at 1 thread, where there is no thread to spin, no difference.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise here
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
