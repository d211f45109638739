"""Hugging Face model ids named by a config: in the local cache, or on a Hub that answers, known within seconds.

Why: with the network off (Kaggle's usual case), transformers' loaders retry every file request for minutes and
then fail with a traceback. One short probe of the Hub endpoint (HF_ENDPOINT) says whether it answers; when it
does not, the process switches to offline mode, so the loaders read the cache at once, and an id that is not in
the cache is one line naming the key. With HF_HUB_OFFLINE=1 nothing is probed. No torch here: this runs before
anything loads.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import urllib.request
from pathlib import Path

from mmtune.errors import InputError

PROBE_SECONDS = 3.0  # a Hub that has not answered by then is treated as unreachable for the whole process
DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "on", "yes", "true"}


def offline_mode() -> bool:
    """Offline by the user's choice (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE) or by an earlier failed probe."""
    if any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    constants = sys.modules.get("huggingface_hub.constants")
    return bool(constants is not None and constants.HF_HUB_OFFLINE)


def endpoint() -> str:
    """The Hub the loaders will ask: huggingface_hub's, once it is imported (it reads HF_ENDPOINT at import)."""
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        return str(constants.ENDPOINT)
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


@functools.cache
def reachable(url: str, seconds: float = PROBE_SECONDS) -> bool:
    """Whether `url` answers an HTTP request within `seconds`, name lookup included (asked once per process)."""
    answers: list[bool] = []

    def ask() -> None:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=seconds):
                answers.append(True)
        except (OSError, ValueError):  # refused, timed out, no such host, a malformed HF_ENDPOINT, and HTTP
            # errors: the Hub answers its front page; a 4xx/5xx there comes from a proxy or gateway in between
            answers.append(False)

    # A thread bounds the whole request: urlopen's timeout does not cover the name lookup.
    probe = threading.Thread(target=ask, name="mmtune-hub-probe", daemon=True)
    probe.start()
    probe.join(seconds)
    return bool(answers and answers[0])


def go_offline() -> None:
    """Offline mode for the rest of the process: libraries imported from now on read the variable; those
    already imported are told through compat."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    if "huggingface_hub.constants" in sys.modules or "datasets.config" in sys.modules:
        from mmtune.compat import hub_offline_for_imported_libraries

        hub_offline_for_imported_libraries()


def hub_unavailable() -> str | None:
    """Why the loaders cannot use the Hub, or None when they can; a Hub that does not answer switches the
    process to offline mode."""
    if _went_offline:
        return f"the Hub ({_went_offline[0]}) cannot be reached"
    if offline_mode():
        return "offline mode is on (HF_HUB_OFFLINE=1)"
    url = endpoint()
    if reachable(url):
        return None
    _went_offline.append(url)
    go_offline()
    return f"the Hub ({url}) cannot be reached"


_went_offline: list[str] = []  # the endpoint whose silence switched this process to offline mode


def valid_repo_id(value: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def cached_config(repo_id: str) -> Path | None:
    """The cached config.json of a model id (the newest snapshot of `main`), or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found) if isinstance(found, str) else None


def check_hub_model(value: str, key: str) -> Path | None:
    """A value that is not a local path: a Hub id that is cached (its config.json returned) or that the Hub
    can serve (None: the loader downloads it); otherwise the one line saying which of the two failed."""
    if not valid_repo_id(value):
        raise InputError(f"{key}: model folder '{value}' not found (and it is not a Hugging Face model id)")
    unavailable = hub_unavailable()
    config = cached_config(value)
    if config is not None or unavailable is None:
        return config
    from huggingface_hub.constants import HF_HUB_CACHE

    raise InputError(f"{key}: '{value}' is neither a model folder nor in the Hugging Face cache ({HF_HUB_CACHE}), and "
                     f"{unavailable}; give the model's folder (e.g. a Kaggle dataset under /kaggle/input) or "
                     "download it first")
