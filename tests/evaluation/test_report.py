"""`mmtune report`: a self-contained page that loads with all its images in headless Chromium."""

import json
import os
import re
import shutil
import subprocess

import pytest

from mmtune.config import load_config
from mmtune.evaluation.report import posts_by_id, write_report
from mmtune.recipes.cv import run_cv
from tests.hostile.test_report_markup import HOSTILE_RUN_NAME, INJECTIONS, POSTS_PER_LABEL, make_cv
from tests.training.conftest import demo_small, fusion_config, run_mmtune, tiny_models, write_config  # noqa: F401


@pytest.fixture(scope="module")
def cv_dir(demo_small, tiny_models, tmp_path_factory):  # noqa: F811
    tmp = tmp_path_factory.mktemp("report")
    config = fusion_config(demo_small, tiny_models, tmp / "cv", epochs=2)
    config["cv"] = {"folds": 3}
    return run_cv(load_config(write_config(config, tmp / "cv.yaml"))).cv_dir


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: CI must install Debian's chromium package (.ci/run does)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def render_dom(html_path, tmp_path) -> str:
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=10000", "--dump-dom", html_path.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def body_attributes(dom: str) -> dict[str, str]:
    body = re.search(r"<body([^>]*)>", dom).group(1)
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body))


def test_cv_report_renders_with_every_image_loaded(cv_dir, tmp_path):
    page = write_report(cv_dir, gallery_size=20)
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']https?:""", text)  # self-contained: nothing fetched
    for title in ("learning curves", "confusion matrix", "per-class F1", "reliability", "fold spread"):
        assert f"<h2>{title}</h2>" in text
    dom = render_dom(page, tmp_path)
    seen = body_attributes(dom)
    assert seen["ready"] == "yes"
    rows = dom.count('<td class="thumb">')
    assert rows >= 1  # misclassified posts with their thumbnails
    assert int(seen["images-total"]) == 5 + rows and seen["images-loaded"] == seen["images-total"]
    assert len(re.findall(r"<tr>", dom.split("<tbody>")[1].split("</tbody>")[0])) <= 20


def test_run_report_from_the_cli(cv_dir, tmp_path):
    result = run_mmtune("report", cv_dir / "fold-0", "--out", tmp_path / "run.html")
    assert result.returncode == 0, result.stderr
    seen = body_attributes(render_dom(tmp_path / "run.html", tmp_path))
    assert seen["images-loaded"] == seen["images-total"] and int(seen["images-total"]) >= 4


def test_a_report_of_hostile_labels_and_captions_renders_its_gallery(tmp_path):
    """Labels, captions and ids that are markup, template syntax and script: the page shows them as text."""
    page = write_report(make_cv(tmp_path, HOSTILE_RUN_NAME, INJECTIONS, INJECTIONS), tmp_path / "hostile.html")
    dom = render_dom(page, tmp_path)
    seen = body_attributes(dom)
    posts = POSTS_PER_LABEL * len(INJECTIONS)
    assert seen["ready"] == "yes" and "pwned" not in seen
    assert dom.count('<td class="thumb">') == posts  # every misclassified post, each with its thumbnail
    assert seen["images-loaded"] == seen["images-total"] == str(5 + posts)
    assert dom.count("<option value=") == 2 * (1 + len(INJECTIONS)) + 3  # gold/predicted filters, sort


def test_report_of_a_folder_without_predictions_exits_2(tmp_path):
    result = run_mmtune("report", tmp_path)
    assert result.returncode == 2 and "neither a finished run folder" in result.stderr


def test_the_gallery_reads_the_validation_file_of_a_run_that_had_one(demo_small):  # noqa: F811

    cfg = load_config(None, [f"data.train={demo_small.train}", f"data.train_images={demo_small.train_images}",
                             f"data.val={demo_small.test}", f"data.val_images={demo_small.test_images}"])
    test_posts = json.loads(demo_small.test.read_text(encoding="utf-8"))
    posts = posts_by_id(cfg)
    assert set(posts) == set(test_posts)
    assert all(post.text == test_posts[pid]["caption"] for pid, post in posts.items())


def test_a_real_cv_on_the_leaderboard_and_beside_its_fold_on_one_page(cv_dir, tmp_path):
    from mmtune.recipes.report import report_folders
    from mmtune.recipes.runs import read_board

    board = read_board([cv_dir, cv_dir / "fold-1"])
    summary = json.loads((cv_dir / "cv_summary.json").read_text(encoding="utf-8"))
    cv, fold = sorted(board.entries, key=lambda e: e.kind)
    assert (cv.kind, fold.kind, fold.name) == ("cv", "run", "fold-1")
    assert cv.macro_f1 == pytest.approx(summary["oof"]["macro_f1"])
    assert cv.macro_f1_std == pytest.approx(summary["macro_f1"]["std"])
    assert cv.wall_s > 0 and fold.wall_s > 0 and cv.model.startswith("fusion pair: bert + vit")
    assert board.keys == []  # a fold and its cv share every setting but the untelling ones
    page = report_folders([cv_dir, cv_dir / "fold-1"], tmp_path / "both.html", gallery_size=10)
    seen = body_attributes(render_dom(page, tmp_path))
    assert seen["ready"] == "yes" and seen["images-loaded"] == seen["images-total"]
