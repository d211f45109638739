"""The notebook API does what the CLI does."""

import numpy as np
import pytest

from mmtune import api
from mmtune.errors import InputError
from mmtune.evaluation.predictions import read_predictions
from tests.training.conftest import demo_small, fusion_config, run_mmtune, tiny_models, write_config  # noqa: F401


def test_config_built_in_code_fit_and_predict_proba(demo_small, tiny_models, tmp_path):  # noqa: F811
    sections = fusion_config(demo_small, tiny_models, tmp_path / "run", epochs=1)
    cfg = api.config(**sections)
    assert cfg.model.kind == "fusion" and cfg.train.epochs == 1
    from_file = api.config(write_config(sections, tmp_path / "c.yaml"), ["train.epochs=3"], train={"epochs": 1})
    assert from_file == cfg  # keywords win over overrides, the rest is the same config
    run = api.fit(cfg)
    assert run.stopped == "finished"
    probs = run.predict_proba(demo_small.test, images=demo_small.test_images)
    written = read_predictions(tmp_path / "run" / "test_predictions.csv")
    assert probs.ids == written.ids and probs.labels == written.labels
    np.testing.assert_allclose(probs.probs, written.probs, atol=2e-6)
    assert len(probs.predicted) == len(written.ids)
    with pytest.raises(InputError, match="unknown key 'train.epoch'"):
        api.config(train={"epoch": 2})


def test_api_cv_and_ensemble_equal_the_cli(demo_small, tiny_models, tmp_path):  # noqa: F811
    sections = fusion_config(demo_small, tiny_models, tmp_path / "api-cv", epochs=1) | {"cv": {"folds": 2}}
    result = api.cv(api.config(**sections))
    path = write_config(sections, tmp_path / "cv.yaml")
    cli = run_mmtune("cv", path, f"output_dir={tmp_path / 'cli-cv'}")
    assert cli.returncode == 0, cli.stderr
    assert (tmp_path / "cli-cv" / "oof.csv").read_text() == result.oof.read_text()
    assert (tmp_path / "cli-cv" / "test.csv").read_text() == result.test.read_text()
    ens = api.ensemble([result.cv_dir], out=tmp_path / "api.csv", method="mean", calibrate=True)
    cli = run_mmtune("ensemble", tmp_path / "cli-cv", "--calibrate", "--out", tmp_path / "cli.csv")
    assert cli.returncode == 0, cli.stderr
    assert (tmp_path / "cli.csv").read_text() == ens.out.read_text()
