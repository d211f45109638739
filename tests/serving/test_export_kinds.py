"""Export/reload equality for vilt, vlm-generative and vlm-head (tiny models), and the LoRA adapters of a VLM run
in PEFT's format and merged, each loaded with plain peft / transformers."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch

from mmtune import api
from mmtune.config import load_saved_config
from mmtune.data.checks import load_posts
from mmtune.evaluation.predictions import read_predictions
from mmtune.recipes.export import export
from tests.models.test_vlm_runs import vlm_run_config
from tests.serving.conftest import start_service
from tests.training.conftest import write_config


def _train(config: dict, root) -> object:
    api.fit(api.config(write_config(config, root / "config.yaml")))
    return root / "run"


def _same_as_run(run_dir, out, demo) -> None:
    exported = api.load(out).predict_proba(demo.test, images=demo.test_images)
    run = read_predictions(run_dir / "test_predictions.csv")
    assert exported.ids == run.ids and exported.labels == run.labels
    np.testing.assert_allclose(exported.probs, run.probs, atol=1e-5)


def _served_as_run(run_dir, out, demo) -> None:
    """The first test post, sent to the service with its image in base64, gets the run's probabilities."""
    cfg = load_saved_config(run_dir / "config.yaml")
    post = load_posts(demo.test, demo.test_images, cfg.data, labels=cfg.data.labels).posts[0]
    images = [base64.b64encode(path.read_bytes()).decode() for path in post.images]
    with start_service(out, max_wait_ms=0) as service:
        status, body = service.post({"caption": post.text, "images": images})
    assert status == 200, body
    run = read_predictions(run_dir / "test_predictions.csv")
    row = run.probs[run.ids.index(post.id)]
    np.testing.assert_allclose([body["results"][0]["probabilities"][k] for k in run.labels], row, atol=1e-5)


def test_vilt_export_predicts_as_the_run(demo_small, tiny_models, tmp_path):
    config = {"name": "tiny-vilt", "output_dir": str(tmp_path / "run"), "seed": 2,
              "data": {"train": str(demo_small.train), "train_images": str(demo_small.train_images),
                       "test": str(demo_small.test), "test_images": str(demo_small.test_images)},
              "model": {"kind": "vilt", "name": str(tiny_models["vilt"]), "vilt": {"max_length": 24}},
              "train": {"epochs": 1, "batch_size": 8, "feature_cache": False, "log_with": []}}
    run_dir = _train(config, tmp_path)
    export(run_dir, tmp_path / "export")
    assert (tmp_path / "export" / "base" / "name" / "config.json").is_file()
    _same_as_run(run_dir, tmp_path / "export", demo_small)
    _served_as_run(run_dir, tmp_path / "export", demo_small)


@pytest.mark.parametrize(("family", "kind"), [("qwen2-vl", "vlm-generative"), ("idefics3", "vlm-head")])
def test_vlm_export_predicts_as_the_run_and_its_adapters_load_with_plain_peft(family, kind, tiny_vlm, demo_small,
                                                                              tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    config = vlm_run_config(demo_small, tiny_vlm(family), tmp_path / "run", kind=kind, epochs=1)
    run_dir = _train(config, tmp_path)
    out = tmp_path / "export"
    export(run_dir, out, merge=True)
    _same_as_run(run_dir, out, demo_small)
    _served_as_run(run_dir, out, demo_small)
    manifest = json.loads((out / "mmtune_export.json").read_text())
    assert manifest["peft"] == {"folder": "peft", "base": "base/name"} and manifest["merged"] == {"folder": "merged"}
    ids = torch.tensor([[1, 5, 9, 12, 7]])
    base = AutoModelForImageTextToText.from_pretrained(str(out / "base" / "name"), dtype=torch.float32)
    with torch.no_grad():
        before = base(input_ids=ids).logits
        adapted = PeftModel.from_pretrained(base, str(out / "peft")).eval()
        with_adapters = adapted(input_ids=ids).logits
        merged = AutoModelForImageTextToText.from_pretrained(str(out / "merged"), dtype=torch.float32).eval()
        merged_logits = merged(input_ids=ids).logits
    assert not torch.allclose(before, with_adapters, atol=1e-6)  # the adapters were trained and did load
    torch.testing.assert_close(merged_logits, with_adapters, atol=1e-4, rtol=1e-4)
    scoring = out / "merged" / "mmtune_scoring.json"
    assert scoring.is_file() == (kind == "vlm-generative")
    if kind == "vlm-generative":
        assert json.loads(scoring.read_text())["labels"] == manifest["labels"]


def test_merge_without_adapters_is_refused(tiny_run, tmp_path):
    from mmtune.errors import InputError

    with pytest.raises(InputError, match="--merge"):
        export(tiny_run, tmp_path / "export", merge=True)
    assert not (tmp_path / "export").exists() and not (tmp_path / "export.tmp").exists()
