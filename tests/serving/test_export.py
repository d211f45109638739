"""`mmtune export`: a folder that loads without the run, its data or the base models, and predicts as the run did."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors import safe_open

from mmtune import api
from mmtune.errors import InputError
from mmtune.evaluation.predictions import read_predictions
from mmtune.recipes.export import export
from mmtune.serving.bundle import read_manifest
from mmtune.serving.card import text
from tests.hostile.conftest import assert_one_line_error
from tests.training.conftest import run_mmtune


def test_export_folder_holds_weights_bases_config_and_card(tiny_export, tiny_run):
    manifest = read_manifest(tiny_export)
    assert manifest["kind"] == "fusion" and manifest["members"] == ["run"]
    assert manifest["labels"] == ["image-sarcasm", "multi-sarcasm", "not-sarcasm", "text-sarcasm"]
    assert sorted(p.name for p in (tiny_export / "base").iterdir()) == ["image_encoder", "text_encoder"]
    assert (tiny_export / "base" / "text_encoder" / "model.safetensors").is_file()
    with safe_open(str(tiny_export / "members" / "run" / "trainable.safetensors"), "pt") as handle:
        assert json.loads(handle.metadata()["labels"]) == manifest["labels"]
    config = (tiny_export / "members" / "run" / "config.yaml").read_text()
    assert "text_encoder: base/text_encoder" in config and "image_encoder: base/image_encoder" in config
    card = (tiny_export / "README.md").read_text()
    metrics = json.loads((tiny_run / "best" / "metrics.json").read_text())
    assert f"| macro_f1 | {metrics['macro_f1']:.4f} |" in card
    assert f"| not-sarcasm | {metrics['per_class']['not-sarcasm']['precision']:.4f} |" in card
    assert "mmtune export run export" in card and "Intended use and limits" in card
    assert not list(tiny_export.rglob("*.pt")) and not list(tiny_export.rglob("*.pkl"))


def test_predict_on_a_moved_export_equals_the_run_without_the_base_models(tiny_export, tiny_run, demo_small,
                                                                         tiny_models, tmp_path):
    moved = shutil.copytree(tiny_export, tmp_path / "elsewhere")
    hidden = {name: path.rename(path.with_name(path.name + "-hidden")) for name, path in tiny_models.items()}
    try:
        result = run_mmtune("predict", moved, demo_small.test, "--images", demo_small.test_images,
                            "--out", tmp_path / "p.csv")
        assert result.returncode == 0, result.stderr[-2000:]
        loaded = api.load(moved).predict_proba(demo_small.test, images=demo_small.test_images)
    finally:
        for name, path in hidden.items():
            path.rename(tiny_models[name])
    run = read_predictions(tiny_run / "test_predictions.csv")
    exported = read_predictions(tmp_path / "p.csv")
    assert exported.ids == run.ids and loaded.ids == run.ids and exported.labels == run.labels
    np.testing.assert_allclose(exported.probs, run.probs, atol=1e-5)
    np.testing.assert_allclose(loaded.probs, run.probs, atol=1e-5)


def test_a_cv_folder_exports_every_fold_with_the_bases_copied_once(tiny_run, tmp_path):
    cv = tmp_path / "cv"
    for fold in (0, 1):
        shutil.copytree(tiny_run, cv / f"fold-{fold}")
    out = export(cv, tmp_path / "export")
    assert out.members == ["fold-0", "fold-1"]
    assert len(list((tmp_path / "export" / "base").iterdir())) == 2  # shared base checkpoints copied once


def test_export_refuses_a_used_folder_and_a_non_run(tiny_run, tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(InputError, match="already exists"):
        export(tiny_run, tmp_path / "used")
    result = run_mmtune("export", tmp_path, tmp_path / "out")
    assert_one_line_error(result, "neither a run folder")


def test_a_base_checkpoint_with_pickled_weights_only_is_refused(tiny_run, tiny_models, tmp_path):
    pickled = shutil.copytree(tiny_models["bert"], tmp_path / "bert-bin")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    run = shutil.copytree(tiny_run, tmp_path / "run")
    config = run / "config.yaml"
    config.write_text(config.read_text().replace(str(tiny_models["bert"]), str(pickled)))
    with pytest.raises(InputError, match="no safetensors weights"):
        export(run, tmp_path / "export")
    assert not (tmp_path / "export").exists() and not (tmp_path / "export.tmp").exists()


def test_a_damaged_manifest_is_one_line(tiny_export, tmp_path, demo_small):
    broken = shutil.copytree(tiny_export, tmp_path / "broken")
    (broken / "mmtune_export.json").write_text('{"format": "mmtune-export", "version": 1, "labels": "x"}')
    result = run_mmtune("predict", broken, demo_small.test, "--out", tmp_path / "p.csv")
    assert_one_line_error(result, "mmtune_export.json")


def test_card_text_never_becomes_markup():
    assert text("<img src=x onerror=alert(1)>|a*b") == "&lt;img src=x onerror=alert\\(1\\)&gt;\\|a\\*b"


def test_serve_refuses_a_port_in_use_in_one_line(tiny_export):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run_mmtune("serve", tiny_export, "--port", str(busy.getsockname()[1]), timeout=60)
    assert_one_line_error(result, "--host/--port: cannot listen on 127.0.0.1:")


@pytest.mark.parametrize("target", ["mmtune_export.json", "members/run/config.yaml"])
def test_predict_out_never_lands_on_the_export_s_own_files(tiny_export, demo_small, tmp_path, target):
    export = shutil.copytree(tiny_export, tmp_path / "export")
    out = export / target
    before = out.read_bytes()
    result = run_mmtune("predict", export, demo_small.test, "--images", demo_small.test_images, "--out", out)
    assert_one_line_error(result, "--out", target.rsplit("/", 1)[-1])
    assert out.read_bytes() == before
