"""Models from `build-vlm` and `sft` are plain transformers folders: the classifier kinds take them as model.name."""

import numpy as np
import pytest

from mmtune.config import load_config
from mmtune.demo import make_demo_data
from mmtune.evaluation.predictions import read_predictions
from mmtune.generative.sft import run_sft
from mmtune.generative.stages import run_build
from mmtune.recipes.train import train
from tests.generative.conftest import run_config


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_data(tmp_path_factory.mktemp("demo"), n_train=24, n_test=8, seed=2, image_size=32,
                          inject_faults=False)


def classify(model_dir, demo, out, kind: str):
    cfg = load_config(None, [
        f"output_dir={out}", f"model.kind={kind}", f"model.name={model_dir}", f"data.train={demo.train}",
        f"data.train_images={demo.train_images}", f"data.test={demo.test}", f"data.test_images={demo.test_images}",
        "train.epochs=1", "train.batch_size=4", "train.log_with=[]", "train.feature_cache=false", "cv.folds=3",
        "model.vlm.image_size=32",
    ])
    assert train(cfg).stopped == "finished"
    pred = read_predictions(out / "test_predictions.csv")
    assert len(pred.ids) == 8 and np.allclose(pred.probs.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("kind", ["vlm-generative", "vlm-head"])
def test_a_built_llava_is_a_backbone_for_the_vlm_kinds(tiny_parts, colour_chat, demo, tmp_path, kind):
    stage1 = tmp_path / "stage1"
    cfg = run_config(None, colour_chat["captions"], colour_chat["images"], stage1, "build.stage=1", "train.epochs=1",
                     f"build.vision={tiny_parts['siglip']}", f"build.llm={tiny_parts['qwen2']}")
    assert run_build(cfg) == "finished"
    classify(stage1 / "model", demo, tmp_path / "classify", kind)


def test_an_sft_model_with_merged_lora_is_a_backbone(tiny_llava, colour_chat, demo, tmp_path):
    sft = tmp_path / "sft"
    assert run_sft(run_config(tiny_llava, colour_chat["chat"], colour_chat["images"], sft, "train.epochs=1",
                              "model.lora.enabled=true")) == "finished"
    classify(sft / "model", demo, tmp_path / "classify", "vlm-generative")
