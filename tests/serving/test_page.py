"""The page at GET /, in headless Chromium against the live service: an image dropped on it and a caption typed,
submitted, and the bars drawn with the served probabilities.

Chromium without a driver cannot pick a file in a file dialog, so the test's served copy of the page (and only
it) ends with a script that does what a person does: it builds a File from a base64 PNG, drops it on the drop
zone with a DataTransfer (the page's own drop handler reads it), types the caption and clicks Classify. Everything
after the drop (FileReader, fetch, rendering) is the page's own code."""

from __future__ import annotations

import json
import re
import subprocess

from mmtune.recipes.serve import make_service
from mmtune.serving.app import page_html
from tests.evaluation.test_report import chromium
from tests.serving.conftest import Service, free_port, png_b64

CAPTION = "<b>not bold</b> & trời"


def _driven_page() -> str:
    driver = f"""<script>
window.addEventListener("load", () => {{
  const bytes = Uint8Array.from(atob("{png_b64()}"), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], "post.png", {{ type: "image/png" }}));
  document.getElementById("drop").dispatchEvent(new DragEvent("drop", {{ dataTransfer: transfer, bubbles: true }}));
  document.getElementById("caption").value = {json.dumps(CAPTION)};
  const click = () => document.getElementById("preview").src ? document.getElementById("classify").click()
                                                              : setTimeout(click, 20);
  click();
}});
</script>"""
    return page_html().replace("</body>", driver + "</body>")


def test_the_page_shows_the_served_probabilities(tiny_export, tmp_path):
    with Service(make_service(tiny_export, max_wait_ms=0, page=_driven_page()), free_port()) as service:
        expected = service.post({"caption": CAPTION, "images": [png_b64()]})[1]["results"][0]
        dom = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=15000", "--dump-dom", service.url + "/"],
            capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rows = re.findall(r'<div class="row( top)?" data-probability="([^"]+)"><span class="label">([^<]*)</span>',
                      dom.stdout)
    assert rows, dom.stdout[-3000:]
    shown = {label: float(p) for _, p, label in rows}
    assert shown.keys() == expected["probabilities"].keys()
    for label, p in expected["probabilities"].items():
        assert abs(shown[label] - p) < 1e-6
    assert [label for top, _, label in rows if top] == [expected["label"]]
    assert f"Decision: {expected['label']}" in dom.stdout
    assert 'id="preview" alt="the chosen image" src="data:image/png;base64,' in dom.stdout
