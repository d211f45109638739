"""Two finished 3-fold cvs on the small demo data, sharing one folds.csv (their fold-K runs validate on the same
posts), built once for the private-test phase tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from mmtune.config import load_config
from mmtune.recipes.cv import run_cv
from tests.training.conftest import demo_small, fusion_config, tiny_models, write_config  # noqa: F401


@dataclass
class TwoCVs:
    a: Path
    b: Path
    test: Path  # the test file both cvs predicted into their test.csv
    test_images: Path


@pytest.fixture(scope="session")
def two_cvs(demo_small, tiny_models, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("private")
    config = fusion_config(demo_small, tiny_models, root / "cv-a", epochs=1)
    config["cv"] = {"folds": 3}
    run_cv(load_config(write_config(config, root / "a.yaml")))
    config |= {"output_dir": str(root / "cv-b"), "seed": 7,
               "cv": {"folds": 3, "folds_file": str(root / "cv-a" / "folds.csv")}}
    config["train"] |= {"lr": 3e-3, "mixed_precision": "bf16"}  # one process predicts both: two precisions
    run_cv(load_config(write_config(config, root / "b.yaml")))
    return TwoCVs(root / "cv-a", root / "cv-b", Path(demo_small.test), Path(demo_small.test_images))
