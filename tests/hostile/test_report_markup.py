"""Nothing from data becomes markup: the HTML report, the report's figures and the terminal tables.

Labels, captions, ids, run names and folder names are hostile strings here; the page must have exactly the
elements and attributes of a page made from benign data, its JSON block must give the data back unchanged,
matplotlib must draw `$...$` as typed, and rich must print `[...]` as typed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import html5lib
import numpy as np
import pytest
import yaml
from PIL import Image

from mmtune.ensemble.cv import summarize
from mmtune.errors import InputError
from mmtune.evaluation import figures
from mmtune.evaluation.folders import OOF_FILE, SUMMARY_FILE, fold_dir
from mmtune.evaluation.predictions import Predictions, write_predictions
from mmtune.evaluation.report import write_report
from tests.hostile.conftest import assert_one_line_error, run_mmtune

INJECTIONS = [
    "{{gallery_json}}", "{{title}}", "{% raw %}", '"><img src=x onerror=alert(1)>', "' onmouseover='alert(1)",
    "</script><script>alert(1)</script>", "<!--<script>", "javascript:alert(1)", "{{ 7*7 }}", "{# c #}",
    "]]><![CDATA[<svg onload=alert(1)>", "&lt;b&gt; &amp;", "\u2028\u2029", "$\\foo$", "[/]", "[bold red]x",
    # A browser that ran one of these would leave data-pwned on <body>: tests/evaluation/test_report.py looks.
    '<img src=x onerror="document.body.dataset.pwned=1">', "</script><script>document.body.dataset.pwned=2</script>",
]
BENIGN = [f"label {k}" for k in range(len(INJECTIONS))]
HOSTILE_RUN_NAME = '"><img src=x onerror=alert(2)> {{ title }}'
# Three posts per label, every one misclassified: all of them are in the gallery.
POSTS_PER_LABEL = 3


def _posts(labels: list[str], texts: list[str]) -> list[tuple[str, str, str]]:
    """(id, caption, gold label); ids and captions are the hostile strings too, made unique."""
    return [(f"{texts[k]}#{n}", f"{texts[(k + n) % len(texts)]} caption {n}", label)
            for k, label in enumerate(labels) for n in range(POSTS_PER_LABEL)]


def _write_data(root: Path, posts: list[tuple[str, str, str]]) -> tuple[Path, Path]:
    images = root / "images"
    images.mkdir(parents=True)
    records = {}
    for n, (post_id, caption, label) in enumerate(posts):
        Image.new("RGB", (24, 24), (40 * (n % 6), 90, 160)).save(images / f"{n}.jpg")
        records[post_id] = {"image": f"{n}.jpg", "caption": caption, "label": label}
    data = root / "data.json"
    data.write_text(json.dumps(records), encoding="utf-8")
    return data, images


def _predictions(labels: list[str], posts: list[tuple[str, str, str]]) -> np.ndarray:
    """Each post's most probable label is the next label after its gold one: every post is a mistake."""
    probs = np.full((len(posts), len(labels)), 0.1)
    for row, (_, _, gold) in enumerate(posts):
        probs[row, (labels.index(gold) + 1) % len(labels)] = 0.5 + 0.01 * (row % 7)
    return probs / probs.sum(axis=1, keepdims=True)


def _write_run(run: Path, name: str, labels: list[str], data: Path, images: Path, metric_key: str) -> None:
    run.mkdir(parents=True)
    config = {"name": name, "data": {"train": str(data), "train_images": str(images), "labels": labels}}
    (run / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    history = [{"step": step, "train_loss": 1.0 / step, "macro_f1": 0.1 * step, metric_key: 0.2} for step in (1, 2)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history), encoding="utf-8")


def make_run(root: Path, folder: str, name: str, labels: list[str], texts: list[str]) -> Path:
    """A finished run folder as `mmtune train` leaves it for the report: config.yaml, metrics.jsonl, predictions."""
    posts = _posts(labels, texts)
    data, images = _write_data(root / "data", posts)
    run = root / folder
    _write_run(run, name, labels, data, images, texts[0])
    val = Predictions([p[0] for p in posts], _predictions(labels, posts), labels, gold=[p[2] for p in posts])
    write_predictions(run / "val_predictions.csv", val)
    return run


def make_cv(root: Path, name: str, labels: list[str], texts: list[str]) -> Path:
    """A cv folder as `mmtune cv` leaves it: fold-K/ runs, oof.csv and cv_summary.json from the real summarize."""
    posts = _posts(labels, texts)
    data, images = _write_data(root / "data", posts)
    cv = root / "cv"
    probs = _predictions(labels, posts)
    folds = [row % 2 for row in range(len(posts))]
    per_fold = {}
    for k in (0, 1):
        _write_run(fold_dir(cv, k), name, labels, data, images, texts[0])
        rows = [row for row, fold in enumerate(folds) if fold == k]
        per_fold[k] = Predictions([posts[r][0] for r in rows], probs[rows], labels, gold=[posts[r][2] for r in rows])
    ids, gold = [p[0] for p in posts], [p[2] for p in posts]
    oof = Predictions(ids, probs, labels, gold=gold, folds=folds, path=cv / OOF_FILE)
    write_predictions(cv / OOF_FILE, oof)
    (cv / SUMMARY_FILE).write_text(json.dumps(summarize(per_fold, oof, total=len(posts))), encoding="utf-8")
    return cv


# ----------------------------------------------------------------------------------------------
# The page


def _parse(page: Path):
    return html5lib.parse(page.read_text(encoding="utf-8"), treebuilder="etree", namespaceHTMLElements=False)


def _shape(document) -> list[tuple[str, tuple[str, ...]]]:
    """Every element in document order with its attribute names: what data must never add to."""
    return [(element.tag, tuple(sorted(element.attrib))) for element in document.iter() if isinstance(element.tag, str)]


def _gallery(document) -> dict:
    block = document.find(".//script[@id='gallery-data']")
    return json.loads(block.text)


def _text(element) -> str:
    return "".join(element.itertext())


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """The report of a run and of a cv folder, from benign and from hostile data."""
    made: dict[str, dict[str, Path]] = {}
    for kind, labels, name, folder in (("benign", BENIGN, "benign", "run"),
                                       ("hostile", INJECTIONS, HOSTILE_RUN_NAME, '"><img src=x onerror=alert(3)>')):
        root = tmp_path_factory.mktemp(kind)
        run = make_run(root / "run", folder, name, labels, labels)
        cv = make_cv(root / "cv", name, labels, labels)
        made[kind] = {"run": write_report(run, root / "run.html"), "cv": write_report(cv, root / "cv.html"),
                      "run_dir": run, "cv_dir": cv}
    return made


@pytest.mark.parametrize("kind", ["run", "cv"])
def test_no_element_or_attribute_comes_from_data(pages, kind):
    benign, hostile = _parse(pages["benign"][kind]), _parse(pages["hostile"][kind])
    assert _shape(hostile) == _shape(benign)
    attributes = [name for element in hostile.iter() if isinstance(element.tag, str) for name in element.attrib]
    assert not [name for name in attributes if name.startswith("on")]
    assert Counter(e.tag for e in hostile.iter() if isinstance(e.tag, str))["script"] == 2
    for image in hostile.iter("img"):
        assert image.get("src").startswith("data:image/png;base64,")


@pytest.mark.parametrize("kind", ["run", "cv"])
def test_the_gallery_json_gives_back_exactly_the_data(pages, kind):
    gallery = _gallery(_parse(pages["hostile"][kind]))
    posts = _posts(INJECTIONS, INJECTIONS)
    assert gallery["labels"] == INJECTIONS
    assert len(gallery["rows"]) == len(posts)
    by_id = {row["id"]: row for row in gallery["rows"]}
    for post_id, caption, gold in posts:
        row = by_id[post_id]
        assert (row["text"], row["gold"]) == (caption, gold)
        assert row["predicted"] == INJECTIONS[(INJECTIONS.index(gold) + 1) % len(INJECTIONS)]
        assert row["thumb"].startswith("data:image/jpeg;base64,")
    raw = pages["hostile"][kind].read_text(encoding="utf-8")
    block = raw.split('<script id="gallery-data" type="application/json">')[1].split("</script>")[0]
    assert not {"<", ">", "'"} & set(block) and "&" not in block  # nothing in the block can end or alter it


def test_the_text_shows_the_data_as_typed(pages):
    document = _parse(pages["hostile"]["run"])
    title = f"{HOSTILE_RUN_NAME}: run {pages['hostile']['run_dir'].name}"
    assert _text(document.find(".//h1")) == title
    assert _text(document.find(".//title")) == f"mmtune report: {title}"
    cells = [_text(row.find("td")) for row in document.iter("tr") if row.find("td") is not None]
    assert cells[: len(INJECTIONS)] == INJECTIONS


def test_a_caption_opening_a_comment_keeps_the_gallery(tmp_path):
    run = make_run(tmp_path, "run", "r", ["a", "b"], ["<!--<script>", "x</script><!--"])
    document = _parse(write_report(run, tmp_path / "r.html"))
    assert {row["text"] for row in _gallery(document)["rows"]} >= {"<!--<script> caption 0", "x</script><!-- caption 0"}


def test_a_lone_surrogate_in_a_caption_still_writes_the_page(tmp_path):
    run = make_run(tmp_path, "run", "r", ["a", "b"], ["c", "d"])
    data = tmp_path / "data" / "data.json"  # JSON may escape a lone surrogate, which UTF-8 cannot encode
    records = {pid: post | {"caption": "x\ud800"} for pid, post in json.loads(data.read_text()).items()}
    data.write_text(json.dumps(records), encoding="utf-8")
    document = _parse(write_report(run, tmp_path / "r.html"))
    # The reader repairs it (an invalid_unicode fault): the page shows the replacement character.
    assert {row["text"] for row in _gallery(document)["rows"]} == {"x\ufffd"}


# ----------------------------------------------------------------------------------------------
# Figures: labels are not mathtext


@pytest.mark.parametrize("label", ["$\\foo$", "$x^{", "a\nb", "x" * 5000, "\ud800", "$$", "\\"])
def test_every_figure_draws_a_hostile_label(label):
    labels = [label, "other"]
    per_class = {name: {"f1": 0.5} for name in labels}
    assert figures.confusion([[1, 2], [3, 4]], labels).startswith(b"\x89PNG")
    assert figures.per_class_f1(per_class).startswith(b"\x89PNG")
    assert figures.fold_spread({"0": 0.4, "1": 0.5}, {name: [0.1, 0.2] for name in labels}).startswith(b"\x89PNG")
    histories = {label: [{"step": 1, "train_loss": 1.0, label: 0.5}], "other": [{"step": 1, "train_loss": 1.0}]}
    assert figures.learning_curves(histories, label).startswith(b"\x89PNG")


def test_a_mathtext_label_gives_a_report_from_the_cli(tmp_path):
    run = make_run(tmp_path, "run", "r", ["$\\foo$", "$x^{"], ["$\\bar$", "b"])
    result = run_mmtune("report", run, "--out", tmp_path / "r.html")
    assert result.returncode == 0, result.stderr
    assert _gallery(_parse(tmp_path / "r.html"))["labels"] == ["$\\foo$", "$x^{"]


@pytest.mark.parametrize("value", ["-5"])
def test_a_negative_gallery_size_is_refused(tmp_path, value):
    run = make_run(tmp_path, "run", "r", ["a", "b"], ["x", "y"])
    result = run_mmtune("report", run, "--gallery", value, "--out", tmp_path / "r.html")
    assert_one_line_error(result, "--gallery", value)
    assert not (tmp_path / "r.html").exists()


def test_an_out_that_is_a_folder_is_refused_and_nothing_is_left(tmp_path):
    run = make_run(tmp_path, "run", "r", ["a", "b"], ["x", "y"])
    (tmp_path / "r.html").mkdir()
    with pytest.raises(InputError, match="r.html: is a folder; --out names the HTML file"):
        write_report(run, tmp_path / "r.html")
    assert not list(tmp_path.glob("r.html.tmp"))


def test_a_gallery_of_zero_shows_no_post(tmp_path):
    run = make_run(tmp_path, "run", "r", ["a", "b"], ["x", "y"])
    assert _gallery(_parse(write_report(run, tmp_path / "r.html", gallery_size=0)))["rows"] == []


# ----------------------------------------------------------------------------------------------
# Damaged run-folder files: exit 2 naming the file (and line), never a traceback

METRICS = {
    "cut short": ('{"step": 1, "train_loss": 1.0}\n{"step": 2, "trai', "metrics.jsonl:2: invalid JSON"),
    "a list": ("[1, 2]\n", "metrics.jsonl:1: a metrics record is a JSON object with a numeric 'step'"),
    "no step": ('{"train_loss": 1}\n', "metrics.jsonl:1: a metrics record"),
    "text step": ('{"step": "2"}\n', "metrics.jsonl:1: a metrics record"),
    "nested deep": ("[" * 100_000 + "]" * 100_000 + "\n", "metrics.jsonl:1: JSON nested too deeply"),
    "latin-1": (b'{"step": 1, "x": "caf\xe9"}\n', "metrics.jsonl: not UTF-8 text (byte 21)"),
}


@pytest.mark.parametrize("case", list(METRICS))
def test_a_damaged_metrics_file_is_named(tmp_path, case):
    content, message = METRICS[case]
    run = make_run(tmp_path, "run", "r", ["a", "b"], ["x", "y"])
    path = run / "metrics.jsonl"
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(message)):
        write_report(run, tmp_path / "r.html")


def test_text_where_a_metric_was_logged_is_a_gap_in_the_curve(tmp_path):
    run = make_run(tmp_path, "run", "r", ["a", "b"], ["x", "y"])
    (run / "metrics.jsonl").write_text('{"step": 1, "train_loss": "x", "macro_f1": null}\n{"step": 2, "train_loss": '
                                       '0.5, "macro_f1": [1]}\n{"step": 3, "train_loss": NaN, "macro_f1": true}\n',
                                       encoding="utf-8")
    assert _parse(write_report(run, tmp_path / "r.html")).find(".//img[@alt='learning curves']") is not None


SUMMARIES = {
    "no folds": lambda s: s | {"folds": []},
    "a list": lambda s: [],
    "no per-class F1": lambda s: {k: v for k, v in s.items() if k != "per_class_f1"},
    "a fold without its F1": lambda s: s | {"folds": [0, 7]},
    "a fold that is a path": lambda s: s | {"folds": ["../../elsewhere", 1]},
    "a text F1": lambda s: s | {"macro_f1": s["macro_f1"] | {"mean": "0.5"}},
    "a text per-class F1": lambda s: s | {"per_class_f1": {"a": {"folds": ["x"]}}},
}


@pytest.mark.parametrize("case", list(SUMMARIES))
def test_a_damaged_cv_summary_is_named(tmp_path, case):
    cv = make_cv(tmp_path, "r", ["a", "b"], ["x", "y"])
    path = cv / SUMMARY_FILE
    path.write_text(json.dumps(SUMMARIES[case](json.loads(path.read_text(encoding="utf-8")))), encoding="utf-8")
    with pytest.raises(InputError, match=f"{re.escape(str(path))}: not a summary written by mmtune cv"):
        write_report(cv, tmp_path / "r.html")


def test_a_cv_summary_cut_short_exits_2_naming_it(tmp_path):
    cv = make_cv(tmp_path, "r", ["a", "b"], ["x", "y"])
    (cv / SUMMARY_FILE).write_text('{"folds": [0, 1', encoding="utf-8")
    assert_one_line_error(run_mmtune("report", cv, "--out", tmp_path / "r.html"), f"{cv / SUMMARY_FILE}: invalid JSON")


# ----------------------------------------------------------------------------------------------
# The terminal: rich markup, emoji codes and control sequences in data print as typed

MARKUP = ["[/]", "[bold]x[/bold]", "[link=javascript:alert(1)]x[/link]", ":thumbs_up:"]


def _markup_data(root: Path) -> tuple[Path, Path]:
    """Labels that are rich markup; ids too, on posts with faults (the faults table shows their ids)."""
    images = root / "images"
    images.mkdir(parents=True)
    records = {}
    for n in range(8):
        Image.new("RGB", (24, 24), (30 * n, 80, 120)).save(images / f"{n}.jpg")
        records[f"{MARKUP[n % 4]}#{n}"] = {"image": f"{n}.jpg", "caption": MARKUP[n % 4], "label": MARKUP[n % 4]}
    records["[bold]x[/bold]"] = {"image": "[/]gone.jpg", "caption": "c", "label": MARKUP[0]}
    records["[link=javascript:alert(1)]x[/link]"] = {"image": "../[/].jpg", "caption": "c", "label": MARKUP[1]}
    records["\x1b]0;title\x07\x1b[31mred"] = {"image": "0.jpg", "caption": "c", "label": "\x1b[2Jwiped"}
    records["\x1b[31mgone"] = {"image": "gone.jpg", "caption": "c", "label": MARKUP[2]}  # in the skipped-posts log
    data = root / "data.json"
    data.write_text(json.dumps(records), encoding="utf-8")
    return data, images


@pytest.fixture
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # why: no cell wraps, so each literal string stays on one line


def test_inspect_prints_markup_labels_and_ids_as_typed(tmp_path, wide_terminal):
    data, images = _markup_data(tmp_path)
    result = run_mmtune("inspect", data, "--images", images)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for label in MARKUP:
        assert f"│ {label} " in result.stdout, label
    assert "id [bold]x[/bold]: '[/]gone.jpg' not found" in result.stdout
    assert "id [link=javascript:alert(1)]x[/link]: '../[/].jpg'" in result.stdout
    assert "\x1b" not in result.stdout and "\\x1b[2Jwiped" in result.stdout  # the terminal never gets an ESC


def test_folds_prints_markup_labels_as_typed(tmp_path, wide_terminal):
    data, images = _markup_data(tmp_path)
    result = run_mmtune("folds", data, "--images", images, "--out", tmp_path / "folds.csv", "-k", "2")
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "fold" in line and "[/]" in line)
    for label in MARKUP:
        assert label in header
    assert "\x1b" not in result.stdout + result.stderr
    assert "ids [bold]x[/bold], [link=javascript:alert(1)]x[/link], \\x1b[31mgone" in result.stderr  # the log line


def test_cv_and_ensemble_tables_print_markup_as_typed(tmp_path, wide_terminal):
    from mmtune.cli.commands import console
    from mmtune.cli.tables import cv_table

    cv = make_cv(tmp_path, "[/]", MARKUP, MARKUP)
    with console.capture() as captured:
        console.print(cv_table(json.loads((cv / SUMMARY_FILE).read_text(encoding="utf-8"))))
    for label in MARKUP:
        assert f"F1 {label} " in captured.get()
    inputs = tmp_path / "[bold]runs[/bold]"  # a path with "/" in its markup: folders "[bold]runs[" and "bold]"
    for name in ("[/]a.csv", "[link=x]b[/link].csv"):
        (inputs / name).parent.mkdir(parents=True, exist_ok=True)
        (inputs / name).write_bytes((cv / OOF_FILE).read_bytes())
    result = run_mmtune("ensemble", inputs / "[/]a.csv", inputs / "[link=x]b[/link].csv", "--out", tmp_path / "e.csv")
    assert result.returncode == 0, result.stderr
    assert f"{inputs / '[/]a.csv'} " in result.stdout and f"{inputs / '[link=x]b[/link].csv'} " in result.stdout


def test_config_prints_markup_values_as_typed(tmp_path, wide_terminal):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"name": "[bold red]x[/]", "data": {"labels": ["[/]", ":thumbs_up:"]}}))
    result = run_mmtune("config", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "name: '[bold red]x[/]'" in result.stdout and "- '[/]'" in result.stdout
    assert "- ':thumbs_up:'" in result.stdout  # not an emoji


def test_the_error_line_shows_a_control_sequence_in_an_id_escaped(tmp_path, wide_terminal):
    data, images = _markup_data(tmp_path)
    records = json.loads(data.read_text(encoding="utf-8"))
    data.write_text(json.dumps({"\x1b[31mgone": records.pop("\x1b[31mgone"), **records}), encoding="utf-8")
    result = run_mmtune("folds", data, "--images", images, "--out", tmp_path / "f.csv", "data.on_bad_row=error")
    assert_one_line_error(result, "post '\\x1b[31mgone' (row 1): missing_image")
    assert "\x1b" not in result.stderr

