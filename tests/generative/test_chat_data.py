import json
from pathlib import Path

import pytest

from mmtune.config import ChatConfig, ColumnsConfig
from mmtune.errors import InputError
from mmtune.generative.chat_data import ReadRequest, read_rows
from tests.generative.conftest import write_images, write_jsonl

IMAGE = {"type": "image"}


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def read(path: Path, images: Path, preference: bool = False, on_bad_row: str = "skip", **chat):
    return read_rows(ReadRequest(path, images, ChatConfig(**chat), ColumnsConfig(), on_bad_row, preference))


@pytest.fixture
def images(tmp_path) -> Path:
    write_images(tmp_path / "img", 3)
    return tmp_path / "img"


def test_messages_rows_become_prompt_completion_with_images_before_the_first_user_text(tmp_path, images):
    path = write_jsonl(tmp_path / "c.jsonl", [{"images": ["0.png", "1.png"], "messages": [
        {"role": "user", "content": "So sánh hai ảnh"}, {"role": "assistant", "content": "giống nhau"}]}])
    result = read(path, images)
    assert result.layout == "messages"
    assert result.rows == [{"images": [str(images / "0.png"), str(images / "1.png")],
                            "prompt": [{"role": "user", "content": [IMAGE, IMAGE, text("So sánh hai ảnh")]}],
                            "completion": [{"role": "assistant", "content": [text("giống nhau")]}]}]


def test_llava_json_with_image_tokens_and_a_system_prompt(tmp_path, images):
    rows = [{"id": "a", "image": "0.png", "conversations": [
        {"from": "human", "value": "<image>\nẢnh này là gì?"}, {"from": "gpt", "value": "Một hình đỏ."}]}]
    path = tmp_path / "llava.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    (row,) = read(path, images, system_prompt="Bạn là trợ lý.").rows
    assert row["prompt"] == [{"role": "system", "content": [text("Bạn là trợ lý.")]},
                             {"role": "user", "content": [IMAGE, text("Ảnh này là gì?")]}]
    assert row["completion"] == [{"role": "assistant", "content": [text("Một hình đỏ.")]}]


def test_internvl_jsonl_multi_image_multi_turn_trains_every_answer_or_only_the_last(tmp_path, images):
    conversation = [{"from": "human", "value": "Ảnh 1: <image>\nẢnh 2: <image>\nKhác gì?"},
                    {"from": "gpt", "value": "Màu."}, {"from": "human", "value": "Chắc không?"},
                    {"from": "gpt", "value": "Chắc."}]
    path = write_jsonl(tmp_path / "internvl.jsonl", [{"id": 0, "image": ["0.png", "1.png"],
                                                      "conversations": conversation}])
    rows = read(path, images).rows
    assert [len(row["prompt"]) for row in rows] == [1, 3]
    assert rows[0]["prompt"][0]["content"] == [text("Ảnh 1: "), IMAGE, text("Ảnh 2: "), IMAGE, text("Khác gì?")]
    assert rows[1]["completion"][0]["content"] == [text("Chắc.")]
    assert len(read(path, images, turns="last").rows) == 1


def test_a_later_turns_image_belongs_only_to_the_rows_whose_prompt_shows_it(tmp_path, images):
    conversation = [{"from": "human", "value": "<image>\nẢnh này là gì?"}, {"from": "gpt", "value": "Mèo."},
                    {"from": "human", "value": "Còn ảnh này? <image>"}, {"from": "gpt", "value": "Chó."}]
    path = write_jsonl(tmp_path / "later.jsonl", [{"id": 0, "image": ["0.png", "1.png"],
                                                   "conversations": conversation}])
    first, second = read(path, images).rows
    assert first["images"] == [str(images / "0.png")]
    assert second["images"] == [str(images / "0.png"), str(images / "1.png")]


def test_captions_layout_uses_the_caption_prompt(tmp_path, images):
    path = write_jsonl(tmp_path / "cap.jsonl", [{"image": "2.png", "caption": "một hình vàng"}])
    (row,) = read(path, images, caption_prompt="Mô tả ảnh.").rows
    assert row["prompt"] == [{"role": "user", "content": [IMAGE, text("Mô tả ảnh.")]}]
    assert row["completion"][0]["content"] == [text("một hình vàng")]


def test_preference_rows(tmp_path, images):
    path = write_jsonl(tmp_path / "p.jsonl", [{"images": ["0.png"], "prompt": "Màu gì?", "chosen": "đỏ",
                                               "rejected": [{"role": "assistant", "content": "xanh"}]}])
    (row,) = read(path, images, preference=True).rows
    assert row == {"images": [str(images / "0.png")], "prompt": [{"role": "user", "content": [IMAGE, text("Màu gì?")]}],
                   "chosen": [{"role": "assistant", "content": [text("đỏ")]}],
                   "rejected": [{"role": "assistant", "content": [text("xanh")]}]}


BAD_ROWS = [
    ("not json", "invalid_json"),
    ({"images": ["nope.png"], "messages": [{"role": "user", "content": "?"}, {"role": "assistant", "content": "!"}]},
     "missing_image"),
    ({"images": ["0.png"], "messages": [{"role": "user", "content": "<image><image>?"},
                                        {"role": "assistant", "content": "!"}]}, "image_count"),
    ({"images": [], "messages": [{"role": "user", "content": "?"}]}, "empty_answer"),
    ({"images": [], "messages": [{"role": "user", "content": "?"}, {"role": "assistant", "content": "  "}]},
     "empty_answer"),
    ({"images": [], "messages": [{"role": "robot", "content": "?"}]}, "bad_message"),
    ({"images": "0.png", "messages": "hi"}, "no_messages"),
]


def test_bad_rows_are_counted_by_reason_and_good_rows_kept(tmp_path, images):
    good = {"images": ["0.png"], "messages": [{"role": "user", "content": "?"}, {"role": "assistant", "content": "!"}]}
    lines = [json.dumps(good)] + [row if isinstance(row, str) else json.dumps(row) for row, _ in BAD_ROWS]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = read(path, images)
    assert len(result.rows) == 1
    expected: dict[str, int] = {}
    for _, reason in BAD_ROWS:
        expected[reason] = expected.get(reason, 0) + 1
    assert dict(result.skipped) == expected


def test_escaping_and_unreadable_images_are_bad_rows_found_when_reading(tmp_path, images):
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    turns = [{"role": "user", "content": "?"}, {"role": "assistant", "content": "!"}]
    path = write_jsonl(tmp_path / "c.jsonl", [{"images": [name], "messages": turns}
                                              for name in ("0.png", "../../etc/passwd", "/etc/passwd", "broken.png")])
    result = read(path, images)
    assert len(result.rows) == 1
    assert dict(result.skipped) == {"unsafe_path": 2, "unreadable_image": 1}


def test_on_bad_row_error_names_the_file_and_line(tmp_path, images):
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"images": ["0.png"], "messages": [{"role": "user", "content": "?"}, {"role": "assistant", "content": "!"}]},
        {"images": ["gone.png"], "messages": [{"role": "user", "content": "?"}, {"role": "assistant", "content": "!"}]},
    ])
    with pytest.raises(InputError, match=r"c\.jsonl line 2: image not found"):
        read(path, images, on_bad_row="error")


def test_files_and_layouts_that_cannot_be_read_are_input_errors(tmp_path, images):
    with pytest.raises(InputError, match="not found"):
        read(tmp_path / "none.jsonl", images)
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"question": "?"}])
    with pytest.raises(InputError, match="cannot tell the layout"):
        read(odd, images)
    prefs = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "?", "chosen": "a", "rejected": "b"}])
    with pytest.raises(InputError, match="SFT needs chat rows"):
        read(prefs, images)
    only_bad = write_jsonl(tmp_path / "bad.jsonl", [{"images": ["x.png"], "messages": []}])
    with pytest.raises(InputError, match="no usable rows"):
        read(only_bad, images)
