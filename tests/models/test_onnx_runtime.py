"""ONNX Runtime for frozen image towers in the feature pass: which runtime runs, the exported graph's cache, and
the fallback to torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmtune.config import load_config
from mmtune.data.post import Post
from mmtune.errors import InputError
from mmtune.models import onnx_runtime
from mmtune.models.extraction import image_features
from mmtune.models.feature_cache import FeatureCache
from mmtune.models.fusion import FusionClassifier
from mmtune.models.onnx_runtime import OnnxImageEncode, choose_runtime, onnx_encode
from mmtune.models.towers import build_image_tower
from tests.models.conftest import noise_image


@pytest.fixture(scope="module")
def tower(tiny_encoder):
    return build_image_tower(load_config(None, ["model.freeze.preset=all"]), str(tiny_encoder("convnext")))


@pytest.fixture(scope="module")
def posts(tmp_path_factory: pytest.TempPathFactory) -> list[Post]:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    paths = [noise_image(root / f"{k}.jpg", 30 + 9 * k, 40, rng) for k in range(5)]
    return [Post(str(k), (paths[k],), "") for k in range(4)] + [Post("4", (paths[3], paths[4]), "two")]


def _features(tower, posts: list[Post], root: Path | None, runtime: str) -> torch.Tensor:
    store = FeatureCache(root).namespace(tower.identity, tower.signature())
    return torch.stack(image_features(tower, store, posts, workers=0, batch_size=2, progress=False, runtime=runtime))


def test_auto_runs_onnx_only_for_a_frozen_tower_on_the_cpu_when_installed(tower, monkeypatch) -> None:
    assert choose_runtime("auto", tower) == "onnx"
    assert choose_runtime("torch", tower) == "torch"
    monkeypatch.setattr(tower, "trainable", True)
    assert choose_runtime("auto", tower) == choose_runtime("onnx", tower) == "torch"
    monkeypatch.setattr(tower, "trainable", False)
    monkeypatch.setattr(onnx_runtime, "available", lambda: False)
    assert choose_runtime("auto", tower) == "torch"


def test_onnx_without_its_packages_is_one_line_naming_the_key(tiny_encoder, monkeypatch) -> None:
    monkeypatch.setattr(onnx_runtime, "available", lambda: False)
    with pytest.raises(InputError, match=r"train.extract_runtime: onnx needs .*onnxruntime and onnx"):
        choose_runtime("onnx", object())
    cfg = load_config(None, [f"model.fusion.text_encoder={tiny_encoder('bert')}",
                             f"model.fusion.image_encoder={tiny_encoder('convnext')}", "train.extract_runtime=onnx"])
    with pytest.raises(InputError, match="train.extract_runtime"):  # before any tower is loaded
        FusionClassifier(cfg, ["a", "b"], 2)
    assert load_config(None, []).train.extract_runtime == "auto"
    with pytest.raises(InputError, match="train.extract_runtime"):
        load_config(None, ["train.extract_runtime=tensorrt"])


def test_the_onnx_path_feeds_plain_nchw_pixels_and_pools_like_the_tower(tower, posts, tmp_path, monkeypatch) -> None:
    seen: list[bool] = []
    call = OnnxImageEncode.__call__

    def recording(self, inputs):
        seen.append(inputs["pixel_values"].is_contiguous())
        return call(self, inputs)

    monkeypatch.setattr(OnnxImageEncode, "__call__", recording)
    onnx = _features(tower, posts, tmp_path, "onnx")
    assert seen == [True] * 3  # 5 posts in batches of 2, none channels-last
    torch.testing.assert_close(onnx, tower.features(posts), atol=1e-3, rtol=1e-3)  # post 4: the mean of two


def test_the_exported_graph_is_kept_under_the_cache_root_and_reused(tower, posts, tmp_path, monkeypatch) -> None:
    first = onnx_encode(tower, tmp_path)
    graphs = list((tmp_path / "onnx").glob("*/encoder.onnx"))
    assert first is not None and len(graphs) == 1 and not list((tmp_path / "onnx").glob(".*"))  # no scratch left

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    again = onnx_encode(tower, tmp_path)
    assert again is not None
    inputs = tower.inputs(posts)
    assert torch.equal(again(inputs), first(inputs))


def test_a_memory_only_cache_exports_to_a_temporary_folder(tower, posts) -> None:
    encode = onnx_encode(tower, None)
    assert encode is not None
    torch.testing.assert_close(encode(tower.inputs(posts)), tower.features(posts), atol=1e-3, rtol=1e-3)


def test_an_export_that_fails_logs_one_line_and_torch_encodes(tower, posts, tmp_path, monkeypatch) -> None:
    def unsupported(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::made_up' to ONNX opset version 18 is not supported.\nmore")

    warned: list[str] = []
    # The module's own logger, not caplog: in a full run other tests' threads may log, or turn propagation off.
    monkeypatch.setattr(onnx_runtime.log, "warning", warned.append)
    monkeypatch.setattr(torch.onnx, "export", unsupported)
    features = _features(tower, posts, tmp_path, "onnx")
    assert torch.equal(features, _features(tower, posts, None, "torch"))
    [message] = warned
    assert "aten::made_up" in message and "encoding with torch" in message and "\n" not in message
    assert not list((tmp_path / "onnx").rglob("*.onnx"))


def test_a_warm_cache_never_exports(tower, posts, tmp_path, monkeypatch) -> None:
    _features(tower, posts, tmp_path, "torch")

    def no_export(*args, **kwargs):
        raise AssertionError("exported for a warm cache")

    monkeypatch.setattr(onnx_runtime, "_exported", no_export)
    _features(tower, posts, tmp_path, "onnx")
