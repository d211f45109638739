import json
from pathlib import Path

import pytest

from mmtune.config import ColumnsConfig
from mmtune.data.readers import iter_records
from mmtune.errors import InputError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_vimmsd_dict_keeps_string_ids_with_gaps_lists_and_null_labels(tmp_path):
    data = {
        "0": {"image": "a.jpg", "caption": "Trời đẹp", "label": "not-sarcasm"},
        "7": {"image": ["b.jpg", "c.jpg"], "caption": "hai ảnh", "label": "multi-sarcasm"},
        "12": {"image": "d.jpg", "caption": "test", "label": None},
    }
    path = write(tmp_path / "vimmsd-train.json", json.dumps(data, ensure_ascii=False))
    records = list(iter_records(path, ColumnsConfig()))
    assert [r.id for r in records] == ["0", "7", "12"]
    assert [r.images for r in records] == [["a.jpg"], ["b.jpg", "c.jpg"], ["d.jpg"]]
    assert [r.label for r in records] == ["not-sarcasm", "multi-sarcasm", None]
    assert records[0].text == "Trời đẹp"
    assert [r.row for r in records] == [1, 2, 3]


def test_json_list_of_posts_uses_the_id_column(tmp_path):
    path = write(tmp_path / "posts.json", json.dumps([{"post_id": 5, "image": "a.jpg", "caption": "x"}]))
    [record] = iter_records(path, ColumnsConfig(id="post_id"))
    assert record.id == "5" and record.label is None


def test_jsonl_with_configured_columns_and_extra_text(tmp_path):
    lines = [
        {"uid": "a1", "images": ["x.png"], "text": "chào", "ocr": "CHỮ TRONG ẢNH", "y": "pos"},
        {"uid": "a2", "images": [], "text": "", "y": None},
    ]
    path = write(tmp_path / "d.jsonl", "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n")
    columns = ColumnsConfig(id="uid", image="images", text="text", label="y", extra_text=["ocr"])
    first, second = iter_records(path, columns)
    assert (first.id, first.images, first.text, first.extra, first.label) == (
        "a1", ["x.png"], "chào", {"ocr": "CHỮ TRONG ẢNH"}, "pos")
    assert (second.images, second.extra, second.label) == ([], {"ocr": ""}, None)
    assert first.row == 1 and second.row == 2


def test_csv_with_several_images_per_cell_and_empty_labels(tmp_path):
    path = write(tmp_path / "d.csv", "id,img,caption,label,ocr\n1,a.jpg;b.jpg,\"xin, chào\",cat,\n2,c.jpg,hi,,note\n")
    columns = ColumnsConfig(image="img", extra_text=["ocr"])
    first, second = iter_records(path, columns)
    assert first.images == ["a.jpg", "b.jpg"] and first.text == "xin, chào" and first.label == "cat"
    assert second.label is None and second.extra == {"ocr": "note"}
    assert (first.row, second.row) == (2, 3)


@pytest.mark.parametrize(
    ("name", "text", "columns", "message"),
    [
        ("bad.json", '{"0": {"image": "a.jpg",}', ColumnsConfig(), r"bad\.json: invalid JSON at line 1"),
        ("bad.jsonl", '{"id": 1, "image": "a", "caption": "x"}\n{oops\n', ColumnsConfig(),
         r"bad\.jsonl:2: invalid JSON"),
        ("bad.csv", "id,picture,caption\n1,a.jpg,x\n", ColumnsConfig(),
         r"bad\.csv: no column 'image' \(data\.columns\.image\)"),
        ("bad.csv", "id,image,caption\n1,a.jpg,x\n", ColumnsConfig(extra_text=["ocr"]), r"no column 'ocr'"),
        ("bad.csv", "id,image,caption\n,a.jpg,x\n", ColumnsConfig(), r"bad\.csv:2: empty id"),
        ("bad.json", '{"0": ["a.jpg", "x"]}', ColumnsConfig(), r"post '0': expected an object"),
        ("bad.json", '{"0": {"image": 5, "caption": "x"}}', ColumnsConfig(), r"post '0': 'image' must be"),
        ("bad.json", '"just text"', ColumnsConfig(), r"expected a JSON object keyed by id"),
        ("bad.jsonl", '{"image": "a", "caption": "x"}\n', ColumnsConfig(), r"bad\.jsonl: row 1: no 'id' field"),
        ("bad.txt", "x", ColumnsConfig(), r"cannot tell the format"),
    ],
)
def test_malformed_files_raise_one_line_naming_the_file(tmp_path, name, text, columns, message):
    path = write(tmp_path / name, text)
    with pytest.raises(InputError, match=message) as info:
        list(iter_records(path, columns))
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="nope.json: data file not found"):
        list(iter_records(tmp_path / "nope.json", ColumnsConfig()))


def test_reader_streams_jsonl_lazily(tmp_path):
    # A bad line at the end must not stop the first posts from being yielded (streaming, not slurping).
    path = write(tmp_path / "d.jsonl", '{"id": 1, "image": "a", "caption": "x"}\nnot json\n')
    records = iter_records(path, ColumnsConfig())
    assert next(records).id == "1"
    with pytest.raises(InputError):
        next(records)
