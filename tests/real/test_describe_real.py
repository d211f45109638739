"""mmtune describe with a real language model (SmolLM2-135M behind a tiny vision tower: no real VLM installs
offline from the package registries): its real chat template and 49k vocabulary through the whole pipeline."""

from __future__ import annotations

import json

import pytest

from mmtune.config import load_config
from mmtune.recipes.describe import describe

pytestmark = pytest.mark.real


def test_describe_with_a_real_language_model_writes_and_caches_its_answers(real_llava, real_posts, tmp_path):
    cfg = load_config(None, [f"model.name={real_llava}", "describe.prompt=caption_vi", "describe.max_new_tokens=12",
                             "describe.batch_size=4", f"describe.cache_dir={tmp_path / 'cache'}"])
    first = describe(cfg, real_posts["train"], real_posts["images"], tmp_path / "out.json")
    rows = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert first.generated == first.images == 4 and all(row["image_caption"].strip() for row in rows.values())
    again = describe(cfg, real_posts["train"], real_posts["images"], tmp_path / "again.json")
    assert again.generated == 0 and json.loads((tmp_path / "again.json").read_text(encoding="utf-8")) == rows
