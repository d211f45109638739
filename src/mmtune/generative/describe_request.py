"""What `mmtune describe` asks of each image: the built-in prompts, the new field's name, the generation settings.

Kept apart from the model code (no torch here), so a bad prompt or field name is named before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmtune.config import ColumnsConfig, DescribeConfig
from mmtune.errors import InputError, shown

PROMPTS = {
    "ocr": "Transcribe all the text written in this image exactly as it appears, in its original language. "
           "Answer with that text only.",
    "caption": "Describe this image in one or two sentences.",
    "ocr_vi": "Hãy chép lại chính xác toàn bộ chữ viết trong ảnh, giữ nguyên ngôn ngữ gốc. Chỉ trả lời bằng "
              "phần chữ đó.",
    "caption_vi": "Mô tả ngắn gọn nội dung bức ảnh trong một hoặc hai câu.",
}
DEFAULT_FIELDS = {"ocr": "ocr_text", "ocr_vi": "ocr_text", "caption": "image_caption", "caption_vi": "image_caption"}
# The (non-empty) answers of one post's images, in image order, joined by this.
JOIN = "\n"


@dataclass(frozen=True)
class DescribeRequest:
    prompt: str  # the text asked of every image
    field: str  # the new field of each post
    batch_size: int
    max_new_tokens: int


def resolve_request(describe: DescribeConfig, columns: ColumnsConfig) -> DescribeRequest:
    """The prompt text and the field name; a field that would overwrite what the readers read is refused."""
    prompt = PROMPTS.get(describe.prompt, describe.prompt)
    if not prompt.strip():
        raise InputError("describe.prompt: empty")
    name = describe.field or DEFAULT_FIELDS.get(describe.prompt)
    if name is None:
        raise InputError(f"describe.field: name the new field for your own prompt (built-in prompts: "
                         f"{', '.join(PROMPTS)})")
    if not name.strip():
        raise InputError("describe.field: empty")
    taken = {"id": columns.id, "image": columns.image, "text": columns.text, "label": columns.label}
    for key, column in taken.items():
        if name == column:
            raise InputError(f"describe.field: '{shown(name)}' is the posts' {key} column (data.columns.{key}); "
                             "writing the answers there would destroy it")
    return DescribeRequest(prompt, name, describe.batch_size, describe.max_new_tokens)
