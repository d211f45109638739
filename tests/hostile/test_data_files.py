"""Hostile data files: broken CSV quoting, wrong widths, bytes that are not UTF-8, deep or odd JSON, labels
that are not text, files with no usable post. Each is exit 2 with one line naming the file and line (or
the config key), or a named fault for that post; no row disappears without being counted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mmtune.cli import main
from mmtune.config import ChatConfig, ColumnsConfig, Config, DataConfig, TextConfig, load_config
from mmtune.data.checks import load_posts
from mmtune.data.folds import read_folds
from mmtune.data.labels import infer_labels
from mmtune.data.readers import iter_records
from mmtune.data.text import TextNormalizer
from mmtune.errors import InputError
from mmtune.evaluation.report import posts_by_id
from mmtune.generative.chat_data import ReadRequest, read_rows
from mmtune.models.feature_cache import file_digest as cache_digest
from mmtune.recipes.train import train
from tests.hostile.conftest import assert_one_line_error, fusion_config, run_mmtune, write_config
from tests.hostile.deadline import within

HEADER = "id,image,caption,label\n"
DEEP = "[" * 100_000 + "]" * 100_000


def records(path: Path, **columns: Any) -> list:
    return list(iter_records(path, ColumnsConfig(**columns)))


def reader_error(path: Path) -> str:
    with pytest.raises(InputError) as info:
        records(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in "abcd":
        Image.new("RGB", (8, 8), (10, 20, 30)).save(folder / f"{name}.jpg")
    return folder


# ---- CSV: nothing swallowed --------------------------------------------------------------------------------


def test_an_unterminated_quote_no_longer_swallows_the_rows_after_it(tmp_path, images):
    # The issue's file: before, posts 2-4 vanished into post 1's caption and inspect reported 1 post.
    path = tmp_path / "d.csv"
    path.write_text(HEADER + '1,a.jpg,"oops,not-sarcasm\n2,b.jpg,fine,not-sarcasm\n'
                    "3,c.jpg,fine,not-sarcasm\n4,d.jpg,fine,not-sarcasm\n", encoding="utf-8")
    assert reader_error(path) == (f"{path}:2: a quoted field opened on line 2 runs on over line 3, which reads as "
                                  "a row of its own; is a closing quote missing?")
    result = run_mmtune("inspect", path, "--images", images, timeout=90)
    assert_one_line_error(result, f"{path}:2: a quoted field opened on line 2")


@pytest.mark.parametrize("tail", [
    '3,c.jpg,"quoted",not-sarcasm\n4,d.jpg,fine,not-sarcasm\n',  # the quote closes inside a later row
    '3,c.jpg,fine",not-sarcasm\n',  # ... or at a later row's end, with the right number of fields
])
def test_a_quote_that_closes_rows_later_names_its_line(tmp_path, tail):
    path = tmp_path / "d.csv"
    path.write_text(HEADER + '1,a.jpg,"oops,not-sarcasm\n2,b.jpg,fine,not-sarcasm\n' + tail, encoding="utf-8")
    assert reader_error(path).startswith(f"{path}:2: a quoted field opened on line 2 runs on over line 3")


def test_a_quote_opened_on_the_last_row_runs_to_the_end_of_the_file(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(HEADER + '1,a.jpg,fine,x\n2,b.jpg,"no end\nof this caption\n', encoding="utf-8")
    assert reader_error(path) == (f"{path}:3: a quoted field opened on line 3 is never closed (it runs to the end "
                                  "of the file); is a closing quote missing?")


def test_multi_line_captions_still_work_and_rows_keep_their_first_line(tmp_path):
    path = tmp_path / "d.csv"
    caption = "Dòng một,\nhai, ba, bốn, năm\n1,2 - ảnh a.jpg, x, y\nsáu"  # prose with 3 commas is no row
    body = f'1,a.jpg,"{caption}",x\r\n2,b.jpg,y,z\r\n\r\n3,c.jpg,"""q""",z\r4,d.jpg,w,z\r'  # CRLF, then lone CRs
    path.write_bytes((HEADER + body).encode())
    found = records(path)
    assert [(r.row, r.id, r.text, r.label) for r in found] == [
        (2, "1", caption, "x"), (6, "2", "y", "z"), (8, "3", '"q"', "z"), (9, "4", "w", "z")]


@pytest.mark.parametrize(("body", "message"), [
    ("1,a.jpg,x,y,extra\n", ":2: 5 fields, but the header has 4 columns"),
    ("1,a.jpg,x,y\n2,b.jpg,x\n", ":3: 3 fields, but the header has 4 columns"),  # was: a silently empty label
    ('1,a.jpg,"x" y,z\n', ":2: malformed CSV"),
])
def test_rows_of_the_wrong_width_or_quoting_name_their_line(tmp_path, body, message):
    path = tmp_path / "d.csv"
    path.write_text(HEADER + body, encoding="utf-8")
    assert message in reader_error(path)


def test_a_repeated_header_column_is_refused_when_mmtune_reads_it(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,image,caption,caption,label\n1,a.jpg,x,y,z\n", encoding="utf-8")
    assert reader_error(path) == f"{path}: the header names column 'caption' 2 times; which one counts?"
    path.write_text("id,image,caption,label,,\n1,a.jpg,x,y,,\n", encoding="utf-8")  # unused blank columns
    assert [r.text for r in records(path)] == ["x"]


def test_an_empty_csv_says_so(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("\n\n", encoding="utf-8")
    assert reader_error(path) == f"{path}: empty file (no header row)"


# ---- bytes -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["d.csv", "d.jsonl", "d.json"])
def test_a_byte_order_mark_is_dropped(tmp_path, name):
    path = tmp_path / name
    body = {"d.csv": HEADER + "1,a.jpg,x,y\n", "d.jsonl": '{"id": "1", "image": "a.jpg", "caption": "x"}\n',
            "d.json": '{"1": {"image": "a.jpg", "caption": "x"}}'}[name]
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert [r.id for r in records(path)] == ["1"]


@pytest.mark.parametrize(("name", "body", "where"), [
    ("d.csv", HEADER.encode() + b"1,a.jpg,caf\xe9,y\n", "byte 0xe9 at line 2, byte offset 34"),
    ("d.jsonl", b'{"id": "1", "image": "a", "caption": "x"}\n{"id": "2", "caption": "\xff"}\n',
     "byte 0xff at line 2, byte offset 66"),
    ("d.json", b'{"1": {"image": "a",\n "caption": "caf\xe9"}}', "byte 0xe9 at line 2, byte offset 37"),
])
def test_bytes_that_are_not_utf8_name_the_line_and_offset(tmp_path, name, body, where):
    path = tmp_path / name
    path.write_bytes(body)
    assert int(where.rpartition(" ")[2]) == body.index(b"\xe9" if b"\xe9" in body else b"\xff")
    assert reader_error(path) == f"{path}: not UTF-8 text: {where}; save the file as UTF-8"


def test_nul_bytes_and_utf16_files_are_refused(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(HEADER.encode() + b"1,a.jpg,x\x00y,z\n")
    assert reader_error(path) == (f"{path}: a NUL byte at line 2, byte offset 32: not a UTF-8 text file "
                                  "(UTF-16 or binary?)")
    path.write_bytes((HEADER + "1,a.jpg,x,y\n").encode("utf-16"))
    assert reader_error(path) == f"{path}: a UTF-16 text file; save it as UTF-8"


def test_a_data_file_that_is_a_fifo_fails_instead_of_blocking(tmp_path):
    os.mkfifo(tmp_path / "d.json")
    with pytest.raises(InputError, match=r"d\.json: the data file is a FIFO, not a file"):
        within(10, lambda: records(tmp_path / "d.json"))


# ---- JSON --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "body", "message"), [
    ("d.json", DEEP, ": JSON lists/objects nested too deeply"),
    ("d.json", '{"a":' * 100_000 + "1" + "}" * 100_000, ": JSON lists/objects nested too deeply"),
    ("d.jsonl", '{"id": "1", "image": "a"}\n' + DEEP + "\n", ":2: JSON lists/objects nested too deeply"),
    ("d.json", '{"1": {"image": "a", "caption": ' + "1" * 5000 + "}}", ": a JSON number with too many digits"),
])
def test_json_the_parser_cannot_take_is_one_line(tmp_path, name, body, message):
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    assert reader_error(path) == f"{path}{message}"


def test_deep_json_through_the_cli(tmp_path, images):
    path = tmp_path / "d.json"
    path.write_text(DEEP, encoding="utf-8")
    assert_one_line_error(run_mmtune("inspect", path, "--images", images, timeout=90),
                          f"{path}: JSON lists/objects nested too deeply")


@pytest.mark.parametrize(("body", "message"), [
    ('{"0": ["a.jpg", "x"]}', "post '0': expected an object with the post's fields, got a list"),
    ("3", "expected a JSON object keyed by id or a list of posts, got a number (3)"),
    ('{"0": {"image": {"a": 1}}}', "post '0': 'image' must be an image name or a list of names, got an object"),
    ('{"0": {"image": "a", "caption": NaN}}', "post '0': 'caption' must be text, got NaN"),
    ('{"0": {"image": "a", "caption": true}}', "post '0': 'caption' must be text, got true"),
    ('{"0": {"image": "a", "caption": "x", "label": "a", "label": "b"}}',
     "post '0': the key 'label' appears twice in the post; which one counts?"),
    ('[{"id": 1, "image": "a", "caption": "x", "extra": {"k": 1, "k": 2}}]',
     "row 1: the key 'k' appears twice in one object"),
    ('[{"id": " ", "image": "a"}]', "row 1: empty id"),
    ('{"": {"image": "a"}}', "post '': empty id"),
])
def test_odd_json_values_are_described_never_named_by_python_type(tmp_path, body, message):
    path = tmp_path / "d.json"
    path.write_text(body, encoding="utf-8")
    error = reader_error(path)
    assert error == f"{path}: {message}"
    assert "_PairsDict" not in error and "dict" not in error and "NoneType" not in error


# ---- labels that are not text --------------------------------------------------------------------------------


@pytest.mark.parametrize(("label", "shown"), [
    ("3", "a number (3)"), ("2.5", "a number (2.5)"), ("NaN", "NaN"), ("Infinity", "Infinity"),
    ("1e999", "1e999"), ("true", "true"), ("[\"a\"]", "a list"), ("{\"x\": 1}", "an object"),
])
@pytest.mark.parametrize("name", ["d.json", "d.jsonl"])
def test_a_label_that_is_not_text_is_a_bad_label_fault(tmp_path, images, name, label, shown):
    path = tmp_path / name
    rows = [f'"id": "1", "image": "a.jpg", "caption": "x", "label": {label}',
            '"id": "2", "image": "b.jpg", "caption": "y", "label": "cat"']
    if name == "d.json":
        path.write_text("[" + ", ".join("{" + row + "}" for row in rows) + "]", encoding="utf-8")
    else:
        path.write_text("".join("{" + row + "}\n" for row in rows), encoding="utf-8")
    loaded = load_posts(path, images, DataConfig(), require_label=True)
    assert [(f.id, f.kind, f.detail) for f in loaded.faults] == [
        ("1", "bad_label", f"'label' is {shown}, not text: labels are strings")]
    assert loaded.skipped == {"1": "bad_label"}
    assert infer_labels(p.label for p in loaded.posts) == ["cat"]  # no class "3" or "nan"
    # Also in a test file, where labels are not needed: the value is still not a label.
    assert load_posts(path, images, DataConfig()).skipped == {"1": "bad_label"}
    with pytest.raises(InputError, match=rf"post '1' \(row 1\): bad_label: 'label' is {re.escape(shown)}"):
        load_posts(path, images, DataConfig(on_bad_row="error"))


def test_csv_labels_stay_text_and_an_empty_cell_is_unlabelled(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(HEADER + "1,a.jpg,x,3\n2,b.jpg,y,\n", encoding="utf-8")
    assert [(r.label, r.label_problem) for r in records(path)] == [("3", None), (None, None)]


# ---- other files mmtune reads --------------------------------------------------------------------------------


def test_folds_files_name_bad_bytes_and_odd_numbers(tmp_path):
    path = tmp_path / "folds.csv"
    path.write_bytes(b"id,fold\n1,0\n2,\xff\n")
    with pytest.raises(InputError, match=r"folds\.csv: not UTF-8 text: byte 0xff at line 3"):
        read_folds(path)
    path.write_text("id,fold\n1,0\n2,\u00b2\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"folds\.csv:3: fold must be an integer >= 0, got '\u00b2'"):
        read_folds(path)
    path.write_text("id,fold\n1,0,9\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"folds\.csv:2: 3 fields, but the header has 2 columns"):
        read_folds(path)
    path.write_text('id,fold\n"1,0\n2,1\n3,0\n', encoding="utf-8")  # was: ids 2 and 3 inside id 1
    with pytest.raises(InputError, match=r"folds\.csv:2: a quoted field opened on line 2 runs on over line 3"):
        read_folds(path)
    os.mkfifo(tmp_path / "fifo.csv")
    with pytest.raises(InputError, match="the folds file is a FIFO"):
        within(10, lambda: read_folds(tmp_path / "fifo.csv"))


def test_a_teencode_file_that_is_a_fifo_fails_instead_of_blocking(tmp_path):
    os.mkfifo(tmp_path / "t.tsv")
    with pytest.raises(InputError, match=r"t\.tsv: the teencode file \(data\.text\.teencode_file\) is a FIFO"):
        within(10, lambda: TextNormalizer(TextConfig(teencode_file=str(tmp_path / "t.tsv"))))


# ---- chat data: the same raw-file rules ---------------------------------------------------------------------


def chat(user: str = "xin chào", answer: str = "chào bạn", **extra: Any) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}], **extra}


def read_chat(path: Path, on_bad_row: str = "skip"):
    return read_rows(ReadRequest(path, None, ChatConfig(), ColumnsConfig(), on_bad_row=on_bad_row))


def test_chat_data_refuses_bad_bytes_with_line_and_offset(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(json.dumps(chat()).encode() + b"\n" + b'{"messages": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"c\.jsonl: not UTF-8 text: byte 0xe9 at line 2, byte offset \d+"):
        read_chat(path)
    path = tmp_path / "c.json"
    path.write_bytes(b"[" + json.dumps(chat()).encode() + b"]\n\xff")
    with pytest.raises(InputError, match=r"c\.json: not UTF-8 text: byte 0xff at line 2"):
        read_chat(path)


def test_chat_data_drops_a_byte_order_mark(tmp_path):
    for name, body in (("c.jsonl", json.dumps(chat()) + "\n"), ("c.json", json.dumps([chat()]))):
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + body.encode())
        assert len(read_chat(path).rows) == 1


def test_chat_data_never_merges_repeated_keys(tmp_path):
    path = tmp_path / "c.jsonl"
    repeated = '{"messages": [{"role": "user", "content": "a", "content": "b"}, {"role": "assistant", "content": "c"}]}'
    path.write_text(repeated + "\n" + json.dumps(chat()) + "\n", encoding="utf-8")
    result = read_chat(path)
    assert dict(result.skipped) == {"duplicate_key": 1} and len(result.rows) == 1
    with pytest.raises(InputError, match=r"c\.jsonl line 1: the key 'content' appears twice in one object"):
        read_chat(path, on_bad_row="error")
    ids = tmp_path / "c.json"
    ids.write_text('{"a": ' + json.dumps(chat()) + ', "a": ' + json.dumps(chat(answer="khác")) + "}", encoding="utf-8")
    result = read_chat(ids)
    assert dict(result.skipped) == {"duplicate_id": 1} and len(result.rows) == 1


def test_chat_data_nested_too_deeply(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(chat()) + "\n" + DEEP + "\n", encoding="utf-8")
    result = read_chat(path)
    assert dict(result.skipped) == {"invalid_json": 1} and len(result.rows) == 1
    with pytest.raises(InputError, match=r"c\.jsonl line 2: JSON lists/objects nested too deeply"):
        read_chat(path, on_bad_row="error")
    whole = tmp_path / "c.json"
    whole.write_text(DEEP, encoding="utf-8")
    with pytest.raises(InputError, match=r"c\.json: JSON lists/objects nested too deeply"):
        read_chat(whole)


def test_chat_data_messages_describe_values(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(chat()) + "\n[1, 2]\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"line 2: a row must be a JSON object, got a list$"):
        read_chat(path, on_bad_row="error")


def test_chat_data_with_a_speaker_that_is_not_text_is_a_bad_row(tmp_path):
    path = tmp_path / "c.json"
    turns = [{"from": ["human"], "value": "a"}, {"from": "gpt", "value": "b"}]
    fine = [{**turns[0], "from": "human"}, turns[1]]
    path.write_text(json.dumps([{"conversations": turns}, {"conversations": fine}]), encoding="utf-8")
    result = read_chat(path)
    assert dict(result.skipped) == {"bad_message": 1} and len(result.rows) == 1


# ---- files without a usable post (item 13) ---------------------------------------------------------------------


def cli(capsys, *args: object) -> str:
    """`mmtune ARGS` in this process: exit 2, and the last stderr line is the one error line."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert lines and lines[-1].startswith("mmtune: error: ") and lines[-1].count("mmtune: error:") == 1, err
    return lines[-1]


def posts_of(demo, n: int) -> dict:
    return dict(list(json.loads(demo.train.read_text(encoding="utf-8")).items())[:n])


@pytest.fixture
def config(demo_small, tiny_models, tmp_path):
    def make(**data: Any) -> Path:
        cfg = fusion_config(demo_small, tiny_models, tmp_path / "run", epochs=1)
        cfg["data"] |= data
        return write_config(cfg, tmp_path / "c.yaml")

    return make


def assert_nothing_trained(run_dir: Path) -> None:
    assert not (run_dir / "metrics.jsonl").exists() and not (run_dir / "last").exists()


def test_a_val_file_without_labels_stops_before_training(capsys, tmp_path, demo_small, config):
    val = tmp_path / "val.json"
    val.write_text(json.dumps({k: {**v, "label": None} for k, v in posts_of(demo_small, 6).items()}), encoding="utf-8")
    line = cli(capsys, "train", config(val=str(val)))
    assert f"data.val ({val}): no usable post, all 6 skipped: unknown_label 6 [e.g. post " in line
    assert line.endswith(": no label]")
    assert_nothing_trained(tmp_path / "run")


def test_a_test_file_whose_posts_are_all_dropped_stops_before_training(capsys, tmp_path, demo_small, config):
    test = tmp_path / "test.json"
    test.write_text(json.dumps({k: {**v, "image": "gone.jpg"} for k, v in posts_of(demo_small, 4).items()}))
    line = cli(capsys, "train", config(test=str(test)))
    assert f"data.test ({test}): no usable post, all 4 skipped: missing_image 4 [e.g. post " in line
    assert_nothing_trained(tmp_path / "run")


@pytest.mark.parametrize("command", ["train", "cv"])
def test_an_empty_or_all_skipped_train_file_names_the_cause_not_cv_folds(capsys, tmp_path, demo_small, config,
                                                                           command):
    empty = tmp_path / "empty.json"
    empty.write_text("{}", encoding="utf-8")
    line = cli(capsys, command, config(train=str(empty)))
    assert line == f"mmtune: error: data.train ({empty}): the file holds no posts"
    unlabelled = tmp_path / "unlabelled.json"
    unlabelled.write_text(json.dumps({k: {**v, "label": None} for k, v in posts_of(demo_small, 5).items()}))
    line = cli(capsys, command, config(train=str(unlabelled)))
    assert f"data.train ({unlabelled}): no usable post, all 5 skipped: unknown_label 5" in line
    assert "cv.folds" not in line


def test_a_missing_images_folder_is_named(capsys, tmp_path, demo_small, config):
    line = cli(capsys, "train", config(train_images=str(tmp_path / "nowhere")))
    assert line == f"mmtune: error: {tmp_path / 'nowhere'}: the images folder of {demo_small.train} not found"


@pytest.fixture(scope="module")
def finished_run(demo_small, tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("finished")
    cfg = fusion_config(demo_small, tiny_models, root / "run", epochs=1)
    cfg["data"].pop("test")
    train(load_config(write_config(cfg, root / "c.yaml")))
    return root / "run"


def test_predict_without_a_usable_post_writes_nothing(capsys, tmp_path, demo_small, finished_run):
    out = tmp_path / "p.csv"
    empty = tmp_path / "empty.json"
    empty.write_text("{}", encoding="utf-8")
    assert cli(capsys, "predict", finished_run, empty, "--images", demo_small.test_images, "--out", out) == (
        f"mmtune: error: {empty}: the file holds no posts")
    line = cli(capsys, "predict", finished_run, demo_small.test, "--images", tmp_path / "nowhere", "--out", out)
    assert line == f"mmtune: error: {tmp_path / 'nowhere'}: the images folder of {demo_small.test} not found"
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({k: {**v, "label": "weird"} for k, v in posts_of(demo_small, 3).items()}))
    line = cli(capsys, "predict", finished_run, odd, "--images", demo_small.train_images, "--out", out)
    assert f"{odd}: no usable post, all 3 skipped: unknown_label 3 [e.g. post " in line
    assert "'weird' is not in data.labels" in line
    assert not out.exists()


# ---- lone surrogates: valid JSON escapes, invalid Unicode ----------------------------------------------------


def write_posts(path: Path, posts: list[dict]) -> Path:
    """ASCII escapes, so a lone surrogate reaches the file as `\\ud800` (it has no UTF-8 form)."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(post) + "\n" for post in posts), encoding="utf-8")
    else:
        path.write_text(json.dumps(posts), encoding="utf-8")
    return path


GOOD = {"id": "2", "image": "b.jpg", "caption": "y", "label": "cat"}


@pytest.mark.parametrize("name", ["d.json", "d.jsonl"])
def test_an_id_with_a_lone_surrogate_is_refused_naming_the_row(tmp_path, name):
    path = write_posts(tmp_path / name, [{"id": "1\ud800", "image": "a.jpg", "caption": "x"}, GOOD])
    error = reader_error(path)
    assert error.endswith(": the id '1\\ud800' is not valid Unicode (a lone surrogate \\ud800 at character 2)")
    error.encode("utf-8")
    keyed = tmp_path / "k.json"
    keyed.write_text(json.dumps({"\udc80": {"image": "a.jpg", "caption": "x"}}), encoding="utf-8")
    assert reader_error(keyed) == (f"{keyed}: post '\\udc80': the id '\\udc80' is not valid Unicode "
                                   "(a lone surrogate \\udc80 at character 1)")


def test_a_label_with_a_lone_surrogate_is_a_bad_label_and_inspect_writes_its_json(tmp_path, images, capsys):
    path = write_posts(tmp_path / "d.json", [{"id": "1", "image": "a.jpg", "caption": "x", "label": "l\ud800"}, GOOD])
    loaded = load_posts(path, images, DataConfig())
    assert [(f.id, f.kind, f.detail) for f in loaded.faults] == [
        ("1", "bad_label", "'label' is 'l\\ud800', not valid Unicode (a lone surrogate \\ud800 at character 2)")]
    assert loaded.skipped == {"1": "bad_label"} and [p.id for p in loaded.posts] == ["2"]
    # Was a UnicodeEncodeError traceback while writing the audit JSON.
    out = tmp_path / "audit.json"
    assert main(["inspect", str(path), "--images", str(images), "--json", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["fault_counts"] == {"bad_label": 1} and report["bad_posts"] == 1
    assert "Traceback" not in capsys.readouterr().err


def test_a_caption_with_a_lone_surrogate_is_a_named_fault_and_the_text_is_repaired(tmp_path, images):
    post = {"id": "1", "image": "a.jpg", "caption": "hay qu\u00e1 \ud83d", "ocr": "\udc00x", "label": "cat"}
    path = write_posts(tmp_path / "d.jsonl", [post, GOOD])
    cfg = DataConfig(columns=ColumnsConfig(extra_text=["ocr"]))
    loaded = load_posts(path, images, cfg)
    assert [(f.id, f.kind, f.detail) for f in loaded.faults] == [
        ("1", "invalid_unicode", "'caption' has a lone surrogate (\\ud83d at character 9); 'ocr' has a lone "
                                 "surrogate (\\udc00 at character 1), not valid Unicode: replaced by U+FFFD")]
    first = loaded.posts[0]
    assert (first.text, first.extra) == ("hay qu\u00e1 \ufffd", {"ocr": "\ufffdx"})
    first.text.encode("utf-8")
    with pytest.raises(InputError, match=r"post '1' \(row 1\): invalid_unicode: 'caption' has a lone surrogate"):
        load_posts(path, images, DataConfig(on_bad_row="error", bad_faults=["invalid_unicode"]))


def test_an_image_name_with_a_lone_surrogate_is_refused_unopened(tmp_path, images):
    path = write_posts(tmp_path / "d.json", [{"id": "1", "image": "a\udc80.jpg", "caption": "x"}, GOOD])
    loaded = load_posts(path, images, DataConfig())
    assert loaded.skipped == {"1": "unsafe_path"}
    assert loaded.faults[0].detail == ("image name 'a\\udc80.jpg' is not valid Unicode "
                                       "(a lone surrogate \\udc80 at character 2); refused")


def test_chat_data_with_a_lone_surrogate_is_a_bad_row(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(chat(answer="ch\u00e0o \ud83d")) + "\n" + json.dumps(chat()) + "\n", encoding="utf-8")
    result = read_chat(path)
    assert dict(result.skipped) == {"invalid_unicode": 1} and len(result.rows) == 1
    expected = "c.jsonl line 1: 'ch\u00e0o \\ud83d' (\\ud83d at character 6): a lone surrogate, not valid Unicode"
    with pytest.raises(InputError, match=re.escape(expected) + "$"):
        read_chat(path, on_bad_row="error")
    # A row's id key is only its name in messages, shown escaped: a repeat of it is still named.
    keyed = tmp_path / "c.json"
    keyed.write_text('{"\\ud800": ' + json.dumps(chat()) + ', "\\ud800": ' + json.dumps(chat()) + "}", encoding="utf-8")
    with pytest.raises(InputError, match=re.escape("c.json row '\\ud800': the id '\\ud800' repeats") + "$"):
        read_chat(keyed, on_bad_row="error")


def test_folds_with_every_post_skipped_names_the_file_and_why(capsys, tmp_path, images):
    # Was "cv.folds=2 but ... 0 groups": the real cause is that no post was usable.
    path = write_posts(tmp_path / "d.json", [{"id": str(i), "image": f"{c}.jpg", "caption": "x"} for i, c in
                                             enumerate("abcd")])
    line = cli(capsys, "folds", path, "--images", images, "--out", tmp_path / "f.csv", "-k", "2")
    assert line == (f"mmtune: error: {path}: no usable post, all 4 skipped: unknown_label 4 "
                    "[e.g. post '0': no label]")
    assert not (tmp_path / "f.csv").exists()


def test_a_report_gallery_without_usable_posts_says_why(tmp_path, images, caplog):
    path = write_posts(tmp_path / "d.json", [{"id": "1", "image": "gone.jpg", "caption": "x", "label": "cat"}])
    cfg = Config(data=DataConfig(train=str(path), train_images=str(images)))
    with caplog.at_level("WARNING"):
        assert posts_by_id(cfg) == {}
    assert (f"report gallery without thumbnails or captions: data.train ({path}): no usable post, all 1 skipped: "
            "missing_image 1") in caplog.text


def test_the_feature_cache_never_reads_a_fifo_or_device_as_an_image(tmp_path, images):
    os.mkfifo(tmp_path / "f.jpg")  # was: read_bytes blocked forever (no writer) / read /dev/zero without end
    (tmp_path / "z.jpg").symlink_to("/dev/zero")
    assert within(10, lambda: cache_digest(tmp_path / "f.jpg")) == "unreadable:f.jpg"
    assert within(10, lambda: cache_digest(tmp_path / "z.jpg")) == "unreadable:z.jpg"
    assert cache_digest(images / "a.jpg") == hashlib.sha256((images / "a.jpg").read_bytes()).hexdigest()
