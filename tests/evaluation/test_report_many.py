"""`mmtune report DIR DIR ...`: one page comparing runs, cv folders and ensembles, driven in headless Chromium
(sort by a header, type in the filter, no console error, a screenshot), and safe with hostile names and data."""

from __future__ import annotations

import json
import re
from collections import Counter

import html5lib
import pytest

from mmtune.errors import InputError
from mmtune.evaluation.folders import OOF_FILE, TEST_FILE
from mmtune.evaluation.predictions import read_predictions
from mmtune.recipes.report import report_folders
from tests.evaluation.browser import Browser
from tests.evaluation.run_folders import make_board
from tests.hostile.conftest import assert_one_line_error, run_mmtune

HOSTILE_LABELS = ['<img src=x onerror="document.body.dataset.pwned=1">',
                  "</script><script>document.body.dataset.pwned=2</script>", "{{ 7*7 }}{% raw %}"]
HOSTILE_TEXTS = ["<!--<script>", '"><img src=x onerror="document.body.dataset.pwned=3">', "{{ title }}",
                 "\u2028</script>", "[bold]x", "&lt;b&gt; &amp;"]
# Folder names are data too (no "/": a name is one folder).
HOSTILE_NAMES = {"lr-small": '"><img src=x onerror=alert(1)>', "lr-big": "{{ board }}", "cv-a": "<script>alert(2)",
                 "cv-b": "cv-b '&amp;", "blend": "<b>blend</b>"}
BENIGN_LABELS = ["label a", "label b", "label c"]
BENIGN_TEXTS = [f"text {k}" for k in range(len(HOSTILE_TEXTS))]


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """The page of the benign board and of the hostile one (same predictions: the same page shape)."""
    made = {}
    for kind, labels, texts, names in (("benign", BENIGN_LABELS, BENIGN_TEXTS, None),
                                       ("hostile", HOSTILE_LABELS, HOSTILE_TEXTS, HOSTILE_NAMES)):
        root = tmp_path_factory.mktemp(kind)
        board = make_board(root, labels, texts, names)
        page = report_folders([root / "runs"], root / "compare.html", gold=board.data.gold_file)
        made[kind] = (board, page)
    return made


@pytest.fixture
def browser(tmp_path):
    opened = Browser(tmp_path / "profile")
    yield opened
    opened.close()


def _rows(browser) -> list[str]:
    return browser.evaluate("Array.from(document.querySelectorAll('#board tbody tr')).map(r => r.cells[0].textContent)")


def _parse(page):
    return html5lib.parse(page.read_text(encoding="utf-8"), treebuilder="etree", namespaceHTMLElements=False)


def test_the_page_sorts_filters_and_logs_no_error(pages, browser, tmp_path):
    _, page = pages["benign"]
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']https?:""", text)  # self-contained: nothing fetched
    for title in ("learning curves", "per-class F1", "confusion matrix: runs/cv-b", "where the best two disagree",
                  "predicted label distribution of the test files", "resolved config"):
        assert title in text
    browser.open(page)
    before = _rows(browser)
    assert before[0] == "runs/cv-b" and len(before) == 5  # best first
    browser.evaluate("document.querySelector('#board th[data-column=\"name\"]').click()")
    assert _rows(browser) == sorted(before)
    browser.evaluate("document.querySelector('#board th[data-column=\"name\"]').click()")
    assert _rows(browser) == sorted(before, reverse=True)
    assert browser.evaluate("document.querySelector('#board th[data-column=\"name\"]').getAttribute('aria-sort')") \
        == "descending"
    browser.evaluate("document.querySelector('#board th[data-column=\"wall_s\"]').click()")
    assert _rows(browser)[-1] == "runs/blend"  # an unknown wall time sorts last
    browser.type_text("#board-filter", "cv-")
    assert sorted(_rows(browser)) == ["runs/cv-a", "runs/cv-b"]
    assert browser.evaluate("document.getElementById('board-count').textContent") == "2 of 5"
    seen = browser.evaluate("JSON.stringify(document.body.dataset)")
    seen = json.loads(seen)
    assert seen["ready"] == "yes" and seen["imagesLoaded"] == seen["imagesTotal"]
    shot = browser.screenshot(tmp_path / "compare.png")
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000
    assert browser.errors() == []


def test_the_disagreements_are_the_posts_the_best_two_label_differently(pages):
    board, page = pages["benign"]
    best = read_predictions(board.runs["cv-b"] / OOF_FILE)
    blend = read_predictions(board.runs["blend"].with_name("blend.oof.csv"))  # second best: the mean of two cvs
    theirs = dict(zip(blend.ids, blend.predicted))
    expected = {pid for pid, label in zip(best.ids, best.predicted) if theirs[pid] != label}
    shown = json.loads(_parse(page).find(".//script[@id='disagree-data']").text)
    assert shown["names"] == ["runs/cv-b", "runs/blend"] and {row["id"] for row in shown["rows"]} == expected
    assert expected and all(row["thumb"].startswith("data:image/jpeg;base64,") for row in shown["rows"])
    row = shown["rows"][0]
    n = int(row["id"].split("#")[1])  # the caption and gold label of the post, from the training file
    assert row["text"] == f"{BENIGN_TEXTS[(n + 1) % len(BENIGN_TEXTS)]} caption {n}"
    assert row["gold"] == BENIGN_LABELS[(n // 3) % 3]


def test_the_test_distribution_counts_each_test_file(pages):
    board, page = pages["benign"]
    table = _parse(page).find(".//table[@class='scores distribution']")
    rows = list(table.iter("tr"))  # a header, a row per label, the post counts
    header = ["".join(cell.itertext()) for cell in rows[0]]
    column = header.index("runs/cv-a")
    counts = Counter(read_predictions(board.runs["cv-a"] / TEST_FILE).predicted)
    assert len(rows) == 2 + len(BENIGN_LABELS)
    for row in rows[1:-1]:
        cells = ["".join(cell.itertext()) for cell in row]
        assert cells[column].startswith(f"{counts[cells[0]]} (")


def _shape(document) -> list[tuple[str, tuple[str, ...]]]:
    return [(element.tag, tuple(sorted(element.attrib))) for element in document.iter() if isinstance(element.tag, str)]


def test_hostile_names_labels_and_captions_stay_text(pages, browser):
    (_, benign), (_, hostile) = pages["benign"], pages["hostile"]
    document = _parse(hostile)
    assert _shape(document) == _shape(_parse(benign))  # no element or attribute comes from data
    assert Counter(e.tag for e in document.iter() if isinstance(e.tag, str))["script"] == 3
    for block in ("board-data", "disagree-data"):
        raw = hostile.read_text(encoding="utf-8").split(f'<script id="{block}" type="application/json">')[1]
        assert not {"<", ">", "'", "&"} & set(raw.split("</script>")[0])
    data = json.loads(document.find(".//script[@id='board-data']").text)
    assert {row["text"][0] for row in data["rows"]} == {f"runs/{name}" for name in HOSTILE_NAMES.values()}
    assert [c["title"] for c in data["columns"] if c["title"].startswith("F1 ")] == [f"F1 {x}" for x in HOSTILE_LABELS]
    browser.open(hostile)
    seen = json.loads(browser.evaluate("JSON.stringify(document.body.dataset)"))
    assert seen["ready"] == "yes" and "pwned" not in seen and seen["imagesLoaded"] == seen["imagesTotal"]
    captions = browser.evaluate("Array.from(document.querySelectorAll('#disagree td.caption')).map(c => c.textContent)")
    assert captions and all(" caption " in caption for caption in captions)
    assert set(_rows(browser)) == {f"runs/{name}" for name in HOSTILE_NAMES.values()}
    assert browser.errors() == []


def test_the_single_run_page_shows_its_config_and_test_distribution(pages):
    board, _ = pages["benign"]
    page = report_folders([board.runs["cv-b"]], board.root / "cv-b.html")
    document = _parse(page)
    config = "".join(document.find(".//details[@class='config']/pre").itertext())
    assert "lr: 0.003" in config and "kind: fusion" in config
    cells = ["".join(c.itertext()) for c in document.find(".//table[@class='scores distribution']").iter("td")]
    counts = Counter(read_predictions(board.runs["cv-b"] / TEST_FILE).predicted)
    assert cells[:2] == [BENIGN_LABELS[0], f"{counts[BENIGN_LABELS[0]]} ({100 * counts[BENIGN_LABELS[0]] / 30:.1f}%)"]


def test_several_folders_need_an_out_that_is_no_input(pages, tmp_path):
    board, _ = pages["benign"]
    a, b = board.runs["cv-a"], board.runs["lr-big"]
    assert_one_line_error(run_mmtune("report", a, b), "--out", "needs a file name")
    with pytest.raises(InputError, match="--out .*oof.csv: is also the input run file oof.csv"):
        report_folders([a, b], a / OOF_FILE)
    result = run_mmtune("report", a, b, "--out", tmp_path / "two.html")
    assert result.returncode == 0, result.stderr
    names = [row["text"][0] for row in json.loads(
        _parse(tmp_path / "two.html").find(".//script[@id='board-data']").text)["rows"]]
    assert sorted(names) == ["cv-a", "lr-big"]
