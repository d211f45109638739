"""Headless Chromium driven over the DevTools protocol (--remote-debugging-pipe: NUL-terminated JSON on the
browser's fds 3 and 4), so a test can click, type, read the DOM, collect console errors and take a screenshot
without a websocket library or a browser driver package."""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.evaluation.test_report import chromium


class Browser:
    def __init__(self, profile: Path, timeout: float = 60) -> None:
        self.timeout = timeout
        to_browser_r, self._write = os.pipe()
        self._read, from_browser_w = os.pipe()
        command = (f'exec "$0" --headless --no-sandbox --disable-gpu --remote-debugging-pipe '
                   f'--user-data-dir="$1" --window-size=1280,1600 3<&{to_browser_r} 4>&{from_browser_w}')
        self.process = subprocess.Popen(["bash", "-c", command, chromium(), str(profile)],
                                        pass_fds=(to_browser_r, from_browser_w),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer, self._next_id, self.events = b"", 0, []
        self.session = None
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session is not None and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self._event(reply)

    def _event(self, event: dict[str, Any]) -> None:
        """Keep an event; an alert() the page opened is dismissed at once (it would block the page), and
        `errors` reports it."""
        self.events.append(event)
        if event.get("method") == "Page.javascriptDialogOpening":
            self._next_id += 1
            dismiss = {"id": self._next_id, "method": "Page.handleJavaScriptDialog", "params": {"accept": False},
                       "sessionId": self.session}
            os.write(self._write, json.dumps(dismiss).encode() + b"\0")

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._read], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, page: Path) -> None:
        """Load the page and wait for its load event."""
        self.events.clear()
        self.send("Page.navigate", url=page.resolve().as_uri())
        while not any(event.get("method") == "Page.loadEventFired" for event in self.events):
            self._event(self._receive())

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def type_text(self, selector: str, text: str) -> None:
        """Focus the element and type into it as a keyboard would (the page gets its input events)."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", text=text)

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions, dialogs (alert) and error log entries seen so far."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(json.dumps(params.get("args")))
            elif method == "Runtime.exceptionThrown":
                found.append(json.dumps(params.get("exceptionDetails")))
            elif method == "Page.javascriptDialogOpening":
                found.append(f"a {params.get('type')} dialog: {params.get('message')}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append(params["entry"].get("text", ""))
        return found

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._write)
        os.close(self._read)
