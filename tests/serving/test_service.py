"""`mmtune serve`: answers as the run predicts, batches concurrent requests into one forward, refuses bad requests
with a 4xx JSON error naming the field, and keeps serving."""

from __future__ import annotations

import base64
import http.client
import json
import threading
import uuid

import numpy as np
import pytest

from mmtune import api
from tests.serving.conftest import png_b64, start_service


@pytest.fixture(scope="module")
def service(tiny_export):
    with start_service(tiny_export, max_batch=8, max_wait_ms=300) as running:
        yield running


def test_health_labels_and_openapi(service):
    health = service.get("/health")[1]
    assert health["status"] == "ok" and health["model_busy_s"] >= 0
    labels = service.get("/v1/labels")[1]["labels"]
    assert labels == ["image-sarcasm", "multi-sarcasm", "not-sarcasm", "text-sarcasm"]
    schema = service.get("/openapi.json")[1]
    assert "/v1/classify" in schema["paths"] and "PostIn" in schema["components"]["schemas"]


def test_classify_equals_the_exported_model(service, tiny_export, demo_small, tmp_path):
    image = png_b64()
    status, body = service.post({"posts": [{"caption": "trời đẹp quá", "images": [image], "id": "a"},
                                           {"caption": "", "images": []}]})
    assert status == 200, body
    first = body["results"][0]
    assert first["id"] == "a" and first["label"] == max(first["probabilities"], key=first["probabilities"].get)
    data = tmp_path / "posts.jsonl"
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(base64.b64decode(image))
    data.write_text(json.dumps({"id": "a", "caption": "trời đẹp quá", "image": "a.png"}) + "\n")
    expected = api.load(tiny_export).predict_proba(data, images=tmp_path / "img").probs[0]
    np.testing.assert_allclose([first["probabilities"][k] for k in body["labels"]], expected, atol=1e-5)


def test_multipart_upload(service):
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="caption"\r\n\r\nhello\r\n'.encode(),
             f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="x.png"\r\n'
             'Content-Type: image/png\r\n\r\n'.encode() + base64.b64decode(png_b64()) + b"\r\n",
             f"--{boundary}--\r\n".encode()]
    status, body = service.post(b"".join(parts), content_type=f"multipart/form-data; boundary={boundary}")
    assert status == 200, body
    assert abs(sum(body["results"][0]["probabilities"].values()) - 1) < 1e-5


def test_two_concurrent_requests_share_one_forward(service):
    before = service.get("/health")[1]["forwards"]
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(service.post({"caption": "x"}))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [status for status, _ in answers] == [200, 200]
    assert service.get("/health")[1]["forwards"] == before + 1


def _bomb_png() -> str:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buffer, format="PNG")  # 81 M pixels in a few kB
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize(("payload", "status", "field"), [
    ({"images": []}, 422, "caption"),
    ({"caption": 3}, 422, "caption"),
    ({"caption": "x", "images": [base64.b64encode(b"not an image at all").decode()]}, 422, "images[0]"),
    ({"caption": "x", "images": ["***"]}, 422, "images[0]"),
    ({"caption": "x", "images": [png_b64()] * 5}, 413, "images"),
    ({"posts": [{"caption": "x"}, {"caption": "y", "images": "z"}]}, 422, "posts[1].images"),
    ({"posts": [{"caption": "x"}] * 65}, 413, "posts"),
    ({"caption": "x", "colour": 1}, 422, "colour"),
    ({"caption": "x", "id": 7}, 422, "id"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "body"),
    (b"{not json", 400, "body"),
])
def test_bad_requests_are_4xx_naming_the_field_and_the_service_keeps_serving(service, payload, status, field):
    got, body = service.post(payload)
    assert got == status, body
    assert body["error"]["field"] == field
    assert service.post({"caption": "still here"})[0] == 200


def test_an_image_over_the_pixel_limit_and_a_body_over_the_byte_limit_are_refused(service):
    got, body = service.post({"caption": "x", "images": [_bomb_png()]})
    assert got == 413 and body["error"]["field"] == "images[0]" and "bomb" in body["error"]["message"]
    connection = http.client.HTTPConnection(service.url.removeprefix("http://"), timeout=30)
    connection.putrequest("POST", "/v1/classify")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(65 << 20))  # refused from the header, before any body is read
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and json.loads(response.read())["error"]["field"] == "body"
    connection.close()
    assert service.post({"caption": "still here"})[0] == 200
