"""A data file written back with one more field: every row, in order, as it was, in its own format."""

from __future__ import annotations

import json

from PIL import Image

from mmtune.config import ColumnsConfig, DataConfig
from mmtune.data.add_field import write_with_field
from mmtune.data.checks import load_posts
from mmtune.data.textfile import loads


def test_json_dict_keeps_repeated_ids_nan_and_lone_surrogates(tmp_path):
    src = tmp_path / "posts.json"
    src.write_text('{"a": {"image": "1.jpg", "caption": "x\\ud83d", "score": NaN, "extra": [1, {"k": "v"}]},\n'
                   '"b": {"image": "2.jpg", "caption": "y", "ocr_text": "old"},\n'
                   '"a": {"image": "3.jpg", "caption": "z"}}', encoding="utf-8")
    replaced = write_with_field(src, tmp_path / "out.json", "auto", ColumnsConfig(), "ocr_text",
                                {1: "chữ một", 2: "hai"})
    assert replaced == 1
    out = loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert [key for key, _ in out.pairs] == ["a", "b", "a"]  # the repeated id stays, for the checks to report
    first, second, third = (value for _, value in out.pairs)
    assert first["ocr_text"] == "chữ một" and first["score"].token == "NaN" and first["extra"] == [1, {"k": "v"}]
    assert first["caption"] == "x\ud83d"  # kept as the file wrote it (an escape), for the checks to report
    assert second["ocr_text"] == "hai" and third["ocr_text"] == ""  # row 3 was not described: empty


def test_json_list_and_jsonl_rows_by_position_and_line(tmp_path):
    listed = tmp_path / "posts.json"
    listed.write_text(json.dumps([{"id": "1", "image": "a.jpg"}, {"id": "2", "image": "b.jpg"}]), encoding="utf-8")
    write_with_field(listed, tmp_path / "out.json", "auto", ColumnsConfig(), "cap", {2: "hai"})
    assert json.loads((tmp_path / "out.json").read_text(encoding="utf-8")) == [
        {"id": "1", "image": "a.jpg", "cap": ""}, {"id": "2", "image": "b.jpg", "cap": "hai"}]
    lines = tmp_path / "posts.jsonl"
    lines.write_text('{"id": "1", "image": "a.jpg"}\n\n{"id": "2", "image": "b.jpg"}\n', encoding="utf-8")
    write_with_field(lines, tmp_path / "out.jsonl", "auto", ColumnsConfig(), "cap", {3: "ba"})
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows == [{"id": "1", "image": "a.jpg", "cap": ""}, {"id": "2", "image": "b.jpg", "cap": "ba"}]


def test_csv_keeps_multiline_captions_and_replaces_an_existing_column(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (8, 8), (200, 0, 0)).save(images / name)
    src = tmp_path / "posts.csv"
    # The caption's second line splits into three fields, as a row would: the readers' row test tells them apart.
    src.write_text('id,image,caption\n1,a.jpg,"first line\nsee, this, too"\n2,b.jpg,plain\n', encoding="utf-8")
    write_with_field(src, tmp_path / "out.csv", "auto", ColumnsConfig(), "ocr", {2: "one, \"quoted\"", 4: "two"})
    data = DataConfig(columns=ColumnsConfig(extra_text=["ocr"]))
    posts = load_posts(tmp_path / "out.csv", images, data).posts
    assert [(p.text, p.extra["ocr"]) for p in posts] == [("first line\nsee, this, too", 'one, "quoted"'),
                                                         ("plain", "two")]
    write_with_field(tmp_path / "out.csv", tmp_path / "again.csv", "auto", ColumnsConfig(), "ocr", {2: "new"})
    header = (tmp_path / "again.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "id,image,caption,ocr"
    assert [p.extra["ocr"] for p in load_posts(tmp_path / "again.csv", images, data).posts] == ["new", ""]
