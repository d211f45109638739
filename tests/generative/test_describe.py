"""mmtune describe on tiny VLMs: the pipeline (field written in the input's format, cache, resume, launcher,
extra_text into a training run, hostile input), not the quality of what a random model reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmtune.config import Config, load_config
from mmtune.data.checks import load_posts
from mmtune.demo import make_demo_data
from mmtune.generative.describe import AnswerCache, Describer, cache_identity
from mmtune.generative.describe_request import resolve_request
from mmtune.models.feature_cache import file_digest
from mmtune.models.vlm_families import families
from mmtune.recipes.describe import describe
from tests.hostile.conftest import assert_one_line_error, run_mmtune
from tests.training.conftest import demo_small, fusion_config, tiny_models, write_config  # noqa: F401


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """20 posts, one with two images, one with a missing and one with a corrupt image (skipped, counted)."""
    return make_demo_data(tmp_path_factory.mktemp("describe"), n_train=20, n_test=4, seed=1, image_size=48,
                          inject_faults=True)


def describe_config(model: Path, cache: Path, *overrides: str) -> Config:
    return load_config(None, [f"model.name={model}", "model.vlm.image_size=32", "describe.max_new_tokens=5",
                              "describe.batch_size=4", f"describe.cache_dir={cache}", *overrides])


def read_rows(path: Path) -> dict[str, dict]:
    return json.loads(path.read_text(encoding="utf-8"))


class Counting:
    """Counts the images Describer.answer is asked for; raises after `fail_after` calls (a killed run)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_after: int | None = None) -> None:
        self.images, self.calls = 0, 0
        original = Describer.answer

        def answer(describer: Describer, paths: list[Path]) -> list[str]:
            if fail_after is not None and self.calls >= fail_after:
                raise KeyboardInterrupt
            self.calls += 1
            self.images += len(paths)
            return original(describer, paths)

        monkeypatch.setattr(Describer, "answer", answer)


def test_the_field_is_written_per_post_in_image_order_and_a_second_run_reads_only_the_cache(
        tiny_vlm, demo, tmp_path, monkeypatch):
    cfg = describe_config(tiny_vlm("llava"), tmp_path / "cache")
    counting = Counting(monkeypatch)
    out = tmp_path / "with-ocr.json"
    first = describe(cfg, demo.train, demo.train_images, out)
    rows, original = read_rows(out), read_rows(demo.train)
    assert list(rows) == list(original)  # every row, in order, with everything it held
    assert all({k: v for k, v in rows[i].items() if k != "ocr_text"} == original[i] for i in original)
    assert first.skipped == 2 and first.posts == 18 and first.generated == first.images == counting.images
    posts = load_posts(demo.train, demo.train_images, cfg.data).posts
    cache = AnswerCache(tmp_path / "cache", *cache_identity(cfg, resolve_request(cfg.describe, cfg.data.columns)))
    for post in posts:
        answers = [cache.answers[file_digest(path)] for path in post.images]
        assert rows[post.id]["ocr_text"] == "\n".join(answer for answer in answers if answer)
    assert any(len(post.images) == 2 for post in posts)
    skipped = set(rows) - {post.id for post in posts}
    assert len(skipped) == 2 and all(rows[i]["ocr_text"] == "" for i in skipped)
    assert any(rows[post.id]["ocr_text"] for post in posts)  # a random model still writes something

    # Same images, model, prompt and settings: no image reaches the model (nor is the model even loaded).
    monkeypatch.setattr(Describer, "__init__", lambda *a: pytest.fail("the model was loaded"))
    again = describe(cfg, demo.train, demo.train_images, tmp_path / "again.json")
    assert again.generated == 0 and read_rows(tmp_path / "again.json") == rows


def test_another_prompt_or_setting_is_another_cache_entry(tiny_vlm, demo, tmp_path):
    cfg = describe_config(tiny_vlm("llava"), tmp_path / "cache")
    request = resolve_request(cfg.describe, cfg.data.columns)
    base = AnswerCache(tmp_path / "cache", *cache_identity(cfg, request)).folder
    for override in ("describe.prompt=caption", "describe.max_new_tokens=6", "model.vlm.image_size=48"):
        other = describe_config(tiny_vlm("llava"), tmp_path / "cache", override)
        folder = AnswerCache(tmp_path / "cache", *cache_identity(other, resolve_request(
            other.describe, other.data.columns))).folder
        assert folder != base, override


def test_a_killed_run_resumes_with_only_the_missing_images(tiny_vlm, demo, tmp_path, monkeypatch):
    cfg = describe_config(tiny_vlm("llava"), tmp_path / "cache")
    Counting(monkeypatch, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        describe(cfg, demo.train, demo.train_images, tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()
    monkeypatch.undo()
    counting = Counting(monkeypatch)
    resumed = describe(cfg, demo.train, demo.train_images, tmp_path / "out.json")
    assert counting.images == resumed.generated == resumed.images - 8  # 2 batches of 4 were kept
    fresh = describe(describe_config(tiny_vlm("llava"), tmp_path / "fresh-cache"), demo.train, demo.train_images,
                     tmp_path / "fresh.json")
    assert fresh.generated == fresh.images
    assert read_rows(tmp_path / "out.json") == read_rows(tmp_path / "fresh.json")  # greedy: the same answers


def test_jsonl_and_csv_inputs_come_out_in_their_format(tiny_vlm, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    for i, colour in enumerate([(200, 10, 10), (10, 10, 200), (10, 200, 10)]):
        Image.new("RGB", (40, 30), colour).save(images / f"{i}.png")
    (tmp_path / "posts.jsonl").write_text("".join(json.dumps({"id": str(i), "image": f"{i}.png", "caption": "x"})
                                                  + "\n" for i in range(3)), encoding="utf-8")
    (tmp_path / "posts.csv").write_text('id,image,caption\n0,0.png,"two\nlines"\n1,1.png;2.png,y\n', encoding="utf-8")
    cfg = describe_config(tiny_vlm("qwen2-vl"), tmp_path / "cache", "describe.prompt=caption")
    describe(cfg, tmp_path / "posts.jsonl", images, tmp_path / "out.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["id"] for row in lines] == ["0", "1", "2"] and all("image_caption" in row for row in lines)
    result = describe(cfg, tmp_path / "posts.csv", images, tmp_path / "out.csv")
    assert result.generated == 0  # the same three images, already described for the JSONL file
    cfg_csv = load_config(None, ["data.columns.extra_text=[image_caption]"])
    posts = load_posts(tmp_path / "out.csv", images, cfg_csv.data).posts
    by_image = {row["image"]: row["image_caption"] for row in lines}
    assert posts[0].text == "two\nlines" and posts[0].extra["image_caption"] == by_image["0.png"]
    assert posts[1].extra["image_caption"] == by_image["1.png"] + "\n" + by_image["2.png"]


@pytest.mark.slow
def test_the_new_field_feeds_a_fusion_run_through_extra_text(tiny_vlm, demo_small, tiny_models, tmp_path):  # noqa: F811
    out = tmp_path / "train-ocr.json"
    result = describe(describe_config(tiny_vlm("llava"), tmp_path / "cache", "describe.batch_size=16",
                                      "describe.max_new_tokens=3"), demo_small.train, demo_small.train_images, out)
    assert result.posts == 96
    config = fusion_config(demo_small, tiny_models, tmp_path / "run", epochs=1)
    config["data"] |= {"train": str(out), "columns": {"extra_text": ["ocr_text"]}}
    trained = run_mmtune("train", write_config(config, tmp_path / "fusion.yaml"))
    assert trained.returncode == 0, trained.stderr[-2000:]
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.data.columns.extra_text == ["ocr_text"]
    posts = load_posts(out, demo_small.train_images, saved.data).posts
    assert all("ocr_text" in post.extra for post in posts) and any(post.extra["ocr_text"] for post in posts)


@pytest.mark.slow
def test_two_processes_split_the_images_and_one_writes_the_file(tiny_vlm, demo, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not shutil.which(str(torchrun)):
        pytest.skip("torchrun not installed")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "out.json"
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "mmtune", "describe", str(demo.train),
                             "--images", str(demo.train_images), "--model", str(tiny_vlm("llava")), "--out", str(out),
                             "--max-new-tokens", "5", "--batch-size", "4", "model.vlm.image_size=32",
                             f"describe.cache_dir={tmp_path / 'cache'}"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("posts described") == 1  # the main process reports, once
    shards = list((tmp_path / "cache").glob("*/shard-*.json"))
    assert len(shards) >= 2  # each process wrote its own batches
    single = describe(describe_config(tiny_vlm("llava"), tmp_path / "one-cache"), demo.train, demo.train_images,
                      tmp_path / "one.json")
    assert single.generated == single.images
    assert read_rows(out) == read_rows(tmp_path / "one.json")


# ---- hostile input: one line, exit 2 ----------------------------------------------------------------------------


@pytest.mark.slow
def test_no_model_or_a_missing_one_is_named(demo, tmp_path):
    base = [demo.train, "--images", demo.train_images, "--out", tmp_path / "o.json"]
    assert_one_line_error(run_mmtune("describe", *base), "--model")
    assert_one_line_error(run_mmtune("describe", *base, "--model", tmp_path / "no-model"), "no-model")


def test_hostile_inputs_exit_2_with_one_line_before_any_model_loads(demo, tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"1": {"image": "a.jpg", "caption": "x"', encoding="utf-8")
    common = ["--images", demo.train_images, "--model", tmp_path / "no-model"]
    cases = [
        ([bad_json, *common, "--out", tmp_path / "o.json"], [str(bad_json), "invalid JSON"]),
        ([demo.train, *common, "--out", demo.train], ["--out", "is also the input"]),
        ([demo.train, *common, "--out", tmp_path / "o.csv"], ["--out", "vimmsd", ".json"]),
        ([demo.train, *common, "--out", tmp_path / "o.json", "--prompt", "Read: {x}"], ["describe.field"]),
        ([demo.train, *common, "--out", tmp_path / "o.json", "--field", "caption"], ["describe.field", "text column"]),
        ([demo.train, *common, "--out", tmp_path / "o.json", "data.on_bad_row=error"],
         [str(demo.train), "missing_image"]),
        ([demo.train, "--images", tmp_path / "nowhere", "--model", "m", "--out", tmp_path / "o.json"],
         ["nowhere", "not found"]),
        ([demo.train, *common, "--out", tmp_path / "o.json", "--batch-size", "0"], ["--batch-size"]),
        ([tmp_path / "none.json", *common, "--out", tmp_path / "o.json"], ["none.json", "not found"]),
    ]
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    posts = tmp_path / "posts.jsonl"
    posts.write_text(json.dumps({"id": "7", "image": "x.jpg", "caption": "c"}) + "\n", encoding="utf-8")
    cases += [
        ([posts, "--images", corrupt, "--model", "m", "--out", tmp_path / "o.jsonl", "data.on_bad_row=error"],
         ["post '7'", "unreadable_image"]),
        ([posts, "--images", corrupt, "--model", "m", "--out", tmp_path / "o.jsonl"],
         ["no usable post", "unreadable_image"]),
    ]
    for args, fragments in cases:
        assert_one_line_error(run_mmtune("describe", *args), *fragments)
    assert not (tmp_path / "o.json").exists() and not (tmp_path / "o.jsonl").exists()


def test_an_internvl_chat_checkpoint_is_read_through_its_conversion(tiny_vlm, tmp_path, monkeypatch):
    from PIL import Image

    from mmtune.models.internvl_chat.cache import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "converted"))
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(images / "0.png")
    data = tmp_path / "posts.jsonl"
    data.write_text(json.dumps({"id": "0", "image": "0.png", "caption": "x"}) + "\n", encoding="utf-8")
    cfg = describe_config(tiny_vlm("internvl-chat"), tmp_path / "cache")
    result = describe(cfg, data, images, tmp_path / "out.jsonl")
    assert result.generated == 1 and list((tmp_path / "converted").iterdir())
    assert "ocr_text" in json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8"))


def test_the_cache_skips_shards_it_cannot_read_and_keeps_the_rest(tmp_path, caplog):
    cache = AnswerCache(tmp_path, "model@1", {"prompt": "p"})
    cache.add({"k1": "chữ", "k2": ""})
    (cache.folder / "shard-torn.json").write_text('{"answers": {"k3": "x"', encoding="utf-8")
    (cache.folder / "shard-wrong.json").write_text('{"answers": {"k4": 3}}', encoding="utf-8")
    os.mkfifo(cache.folder / "shard-fifo.json")
    again = AnswerCache(tmp_path, "model@1", {"prompt": "p"})
    assert again.answers == {"k1": "chữ", "k2": ""} and again.bad_shards == 3
    assert "3 unreadable cache shards skipped" in caplog.text
    assert AnswerCache(tmp_path, "model@2", {"prompt": "p"}).answers == {}  # another checkpoint: another entry


@pytest.mark.slow
@pytest.mark.parametrize("family", [f.name for f in families() if f.has_vision and f.tiny is not None])
def test_every_vision_family_describes_a_post_with_two_images(family, tiny_vlm, tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i, size in enumerate([(40, 30), (30, 50)]):
        Image.new("RGB", size, (200, 40 * i, 10)).save(images / f"{i}.png")
    data = tmp_path / "posts.jsonl"
    data.write_text(json.dumps({"id": "0", "image": ["0.png", "1.png"], "caption": "x"}) + "\n", encoding="utf-8")
    cfg = describe_config(tiny_vlm(family), tmp_path / "cache", "model.vlm.max_tiles=2")
    result = describe(cfg, data, images, tmp_path / "out.jsonl")
    assert result.generated == 2 and result.posts == 1
