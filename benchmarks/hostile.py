"""Hostile-input corpus (issue 9): how `python -m mmtune ...` answers what an adversarial user hands it.

Every case builds its small files in a temp folder, runs the real CLI in a subprocess (with a timeout and
a 4 GiB address-space cap, so /dev/zero cannot eat the machine) and classifies what happened against the
case's promise (README: exit 2 and one line naming the file/key/row, or a named fault; nothing lost):

  ok          exit 2 with exactly one `mmtune: error:` line, last on stderr, naming what the case says;
              or exit 0 with the outputs/counts the case checks
  traceback   a Python traceback reached the user
  silent_loss rows vanished without being counted, or an input was overwritten
  hang        the command ran past its timeout
  security    a payload ran (marker file), a file outside the images folder was used, or data became markup
  wrong       any other broken promise (exit 0 having done nothing, error line not last, internal type names)

It measures; it is not a test: it always exits 0.

    HF_HUB_OFFLINE=1 python benchmarks/hostile.py [--jobs 2] [--only SUBSTRING] [--list]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STATUSES = ("ok", "traceback", "silent_loss", "hang", "security", "wrong")
FAMILIES = ("data", "images", "config", "run_folder", "kill", "concurrency", "report", "submit_ensemble")
MEMORY_CAP = 4 << 30
TIMEOUT = 60.0
LABELS = ["image-sarcasm", "multi-sarcasm", "not-sarcasm", "text-sarcasm"]
# Names the user never typed: private classes and Python exception types leaking into the one line.
INTERNAL_NAME = re.compile(r"\b_[A-Z]\w+|\b[A-Z]\w*(Error|Exception)\b|object at 0x|<class '")

# ----------------------------------------------------------------------------------------------
# Processes


@dataclass
class Proc:
    """One finished command."""

    args: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def last_line(self) -> str:
        lines = [line for line in self.stderr.split("\n") if line.strip()]
        return lines[-1].strip() if lines else ""


def mmtune_command(args: Sequence[object]) -> list[str]:
    """`python -m mmtune ARGS` under a memory cap (set in the child, before mmtune starts)."""
    cap = (f"import os,resource,sys; resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_CAP}, {MEMORY_CAP})); "
           "os.execv(sys.executable, [sys.executable, '-m', 'mmtune', *sys.argv[1:]])")
    return [sys.executable, "-c", cap, *map(str, args)]


def child_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONWARNINGS": "ignore"}


def start(args: Sequence[object], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(mmtune_command(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace", env=child_env(), cwd=cwd, start_new_session=True)


def finish(process: subprocess.Popen, args: Sequence[object], started: float, timeout: float) -> Proc:
    try:
        out, err = process.communicate(timeout=max(0.1, timeout - (time.monotonic() - started)))
        return Proc(list(map(str, args)), process.returncode, out, err, time.monotonic() - started)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        return Proc(list(map(str, args)), None, out, err, time.monotonic() - started, timed_out=True)


def run(args: Sequence[object], cwd: Path, timeout: float = TIMEOUT) -> Proc:
    started = time.monotonic()
    return finish(start(args, cwd), args, started, timeout)


# ----------------------------------------------------------------------------------------------
# Shared fixtures: built once, read by every case (cases copy what they change)


@dataclass
class Shared:
    root: Path
    train: Path  # ViMMSD JSON dict of labelled posts
    train_images: Path
    test: Path
    test_images: Path
    bert: Path
    vit: Path
    run: Path  # a finished 1-epoch tiny fusion run
    posts: dict[str, dict[str, Any]]  # the training file's posts
    bomb: Path  # a 20000 x 20000 PNG (decompression bomb), a few KB

    def base_config(self, out: Path, **sections: dict[str, Any]) -> dict[str, Any]:
        config = {
            "name": "hostile", "output_dir": str(out), "seed": 3,
            "data": {"train": str(self.train), "train_images": str(self.train_images), "test": str(self.test),
                     "test_images": str(self.test_images), "image": {"size": 32}},
            "model": {"kind": "fusion", "fusion": {"text_encoder": str(self.bert), "image_encoder": str(self.vit),
                                                   "projection_dim": 16, "hidden_size": 16, "max_length": 24}},
            "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "head_lr": 3e-3, "feature_cache": False,
                      "log_with": []},
            "cv": {"folds": 4},
        }
        for section, values in sections.items():
            config[section] = {**config.get(section, {}), **values} if isinstance(values, dict) else values
        return config


def build_shared(root: Path, with_runs: bool = True) -> Shared:
    """Demo data, tiny towers, a bomb image and (`with_runs`) the trained runs that run-folder and kill cases copy."""
    from PIL import Image

    from mmtune.demo import make_demo_data
    from mmtune.testing.tiny import make_tiny

    demo = make_demo_data(root / "demo", n_train=48, n_test=12, seed=1, image_size=48, inject_faults=False)
    bert, vit = make_tiny("bert", root / "tiny-bert"), make_tiny("vit", root / "tiny-vit")
    bomb = root / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb, optimize=True)
    shared = Shared(root, demo.train, demo.train_images, demo.test, demo.test_images, Path(bert), Path(vit),
                    root / "run", json.loads(demo.train.read_text(encoding="utf-8")), bomb)
    if not with_runs:
        return shared
    reference = root / "kill-reference"
    configs = [write_yaml(root / "run.yaml", shared.base_config(shared.run)),
               write_yaml(root / "kill-reference.yaml", shared.base_config(reference, train=KILL_TRAIN))]
    for config in configs:
        proc = run(["train", config], root, timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"could not train the shared run {config}:\n{proc.output[-3000:]}")
    return shared


# ----------------------------------------------------------------------------------------------
# Case context and helpers


def write_yaml(path: Path, value: Any) -> Path:
    path.write_text(yaml.safe_dump(value, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


@dataclass
class Ctx:
    shared: Shared
    tmp: Path
    procs: list[Proc] = field(default_factory=list)
    victim_before: bytes = b""  # an input's bytes before a command that might overwrite it

    @property
    def marker(self) -> Path:
        """A payload's proof of life: hostile pickles and YAML tags try to create this file."""
        return self.tmp / "PWNED"

    def mmtune(self, *args: object, timeout: float = TIMEOUT) -> Proc:
        proc = run(args, self.tmp, timeout)
        self.procs.append(proc)
        return proc

    def path(self, name: str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.path(name)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def posts(self, n: int = 8) -> dict[str, dict[str, Any]]:
        """The first n training posts, fresh copies, with ids "0".."n-1"."""
        return {str(k): dict(post) for k, post in enumerate(list(self.shared.posts.values())[:n])}

    def config(self, name: str = "cfg.yaml", **sections: dict[str, Any]) -> Path:
        return write_yaml(self.path(name), self.shared.base_config(self.tmp / "run", **sections))

    def copy_run(self) -> Path:
        return Path(shutil.copytree(self.shared.run, self.tmp / "run", symlinks=True))

    def run_config(self) -> Path:
        """The shared run's config pointed at this case's copy of the run."""
        config = yaml.safe_load((self.shared.root / "run.yaml").read_text(encoding="utf-8"))
        config["output_dir"] = str(self.tmp / "run")
        return write_yaml(self.path("run.yaml"), config)

    def images(self, n: int = 4) -> tuple[Path, dict[str, dict[str, Any]]]:
        """An images folder of n good images and the posts that use them (ids 0..n-1)."""
        folder = self.path("images")
        folder.mkdir(exist_ok=True)
        posts = {}
        for k, post in enumerate(list(self.shared.posts.values())[:n]):
            shutil.copy(self.shared.train_images / post["image"], folder / f"g{k}.jpg")
            posts[str(k)] = {"image": f"g{k}.jpg", "caption": post["caption"], "label": post["label"]}
        return folder, posts

    def inspect(self, data: Path, images: Path | None = None, *extra: object) -> Proc:
        images = images or self.shared.train_images
        return self.mmtune("inspect", data, "--images", images, "--json", self.tmp / "audit.json", *extra)

    def audit(self) -> dict[str, Any]:
        return json.loads((self.tmp / "audit.json").read_text(encoding="utf-8"))


class Finding(Exception):
    """A case's own verdict, raised while it orchestrates several processes (kills, concurrency)."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


Check = Callable[[Ctx, Proc], "tuple[str, str] | None"]


@dataclass(frozen=True)
class Expect:
    """What the README promises: exit 2 naming `error` fragments ("a|b" = either), and/or exit 0 passing `success`."""

    error: tuple[str, ...] | None = None
    success: Check | None = None


def error(*fragments: str, success: Check | None = None) -> Expect:
    return Expect(error=fragments, success=success)


def succeeds(check: Check | None = None) -> Expect:
    return Expect(success=check or (lambda ctx, proc: None))


@dataclass(frozen=True)
class Case:
    name: str
    family: str
    item: str  # the issue's item ("1".."22", "smaller") this case reproduces; "" for the wider corpus
    act: Callable[[Ctx], Proc]
    expect: Expect


CASES: list[Case] = []


def case(name: str, family: str, expect: Expect, item: str = "") -> Callable[[Callable[[Ctx], Proc]], Callable]:
    def register(act: Callable[[Ctx], Proc]) -> Callable[[Ctx], Proc]:
        CASES.append(Case(name, family, item, act, expect))
        return act
    return register


# ----------------------------------------------------------------------------------------------
# Checks of exit-0 outcomes


def audit_check(good: int, faults: dict[str, str] | None = None, no_labels: Sequence[str] = ()) -> Check:
    """inspect's audit: `good` usable posts, a fault of the given kind ("a|b") per id, no invented label."""
    def check(ctx: Ctx, proc: Proc) -> tuple[str, str] | None:
        audit = ctx.audit()
        for label in no_labels:
            if label in audit["labels"]["counts"]:
                return "wrong", f"label {label!r} silently became a class"
        usable = audit["posts"] - audit["bad_posts"]
        if usable < good:
            return "silent_loss", f"{usable} usable posts of {audit['posts']}, expected {good}"
        by_id: dict[str, set[str]] = {}
        for fault in audit["faults"]:
            by_id.setdefault(str(fault["id"]), set()).add(fault["kind"])
        for pid, kinds in (faults or {}).items():
            if not by_id.get(pid, set()) & set(kinds.split("|")):
                status = "security" if "unsafe_path" in kinds else "wrong"
                return status, f"post {pid!r}: no {kinds} fault (faults: {sorted(by_id.get(pid, []))})"
        if usable != good:
            return "wrong", f"{usable} usable posts of {audit['posts']}, expected {good}"
        return None
    return check


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def file_unchanged(path: Path, before: bytes) -> tuple[str, str] | None:
    if not path.is_file() or path.read_bytes() != before:
        return "silent_loss", f"the input {path.name} was overwritten"
    return None


def trained(ctx: Ctx, proc: Proc) -> tuple[str, str] | None:
    """exit 0 from train: something was trained and written."""
    run_dir = ctx.tmp / "run"
    for name in ("val_predictions.csv", "metrics.jsonl"):
        if not (run_dir / name).exists():
            return "wrong", f"exit 0 without {name}"
    return None


# ----------------------------------------------------------------------------------------------
# Helpers that build hostile files


def dump(posts: Any) -> str:
    return json.dumps(posts, ensure_ascii=False, indent=1)


def csv_text(rows: Sequence[Sequence[str]], header: Sequence[str] = ("id", "image", "caption", "label")) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def post_rows(ctx: Ctx, n: int, plain: bool = False) -> list[list[str]]:
    """CSV rows of n posts; `plain`: captions without commas or quotes, so no field of theirs is quoted."""
    return [[pid, p["image"], f"plain caption {pid}" if plain else p["caption"], p["label"]]
            for pid, p in ctx.posts(n).items()]


def jsonl_text(ctx: Ctx, n: int) -> list[str]:
    return [json.dumps({"id": pid, **p}, ensure_ascii=False) for pid, p in ctx.posts(n).items()]


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


class Evil:
    """Unpickling this runs `touch MARKER`: what a tampered run folder can carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def evil_pickle(ctx: Ctx, path: Path) -> None:
    import torch

    torch.save({"state": Evil(ctx.marker), "param_groups": []}, path)


def fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def unix_socket(path: Path) -> Path:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))  # the file stays after close: a socket node named like an image
    server.close()
    return path



# ==============================================================================================
# data files: JSON / JSONL / CSV faults, nesting, encodings, NUL, BOM, quotes, labels, duplicates


def _json_file_error(name: str, content: Callable[[Ctx], str | bytes], item: str = "", filename: str = "d.json",
                     fragment: str = "") -> None:
    @case(name, "data", error(fragment or filename), item)
    def act(ctx: Ctx) -> Proc:
        return ctx.inspect(ctx.write(filename, content(ctx)))


_json_file_error("json_syntax_error", lambda ctx: '{"1": {"image": "a.jpg",, }}')
_json_file_error("json_truncated", lambda ctx: dump(ctx.posts(6))[:-40])
_json_file_error("json_nested_100k_deep", lambda ctx: deep(100_000), item="7")
_json_file_error("json_nested_100k_in_caption",
                 lambda ctx: '{"1": {"image": "a.jpg", "caption": ' + deep(100_000) + ', "label": "x"}}', item="7")
_json_file_error("json_nested_objects_50k", lambda ctx: '{"a":' * 50_000 + "1" + "}" * 50_000, item="7")
_json_file_error("json_top_level_string", lambda ctx: '"just a string"')
_json_file_error("json_top_level_number", lambda ctx: "42")
_json_file_error("json_empty_file", lambda ctx: b"")
_json_file_error("json_whitespace_only", lambda ctx: "   \n\n  ")
_json_file_error("json_latin1_bytes", lambda ctx: dump(ctx.posts(4)).replace("ư", "u").encode("utf-8")
                 .replace(b'"caption": "', b'"caption": "caf\xe9 ', 1))
_json_file_error("json_utf16", lambda ctx: dump(ctx.posts(4)).encode("utf-16"))
_json_file_error("json_post_is_string", lambda ctx: dump({**ctx.posts(3), "99": "not a post"}), fragment="99")
_json_file_error("json_image_is_number", lambda ctx: dump({**ctx.posts(3), "99": {"image": 5, "caption": "x",
                                                                                  "label": LABELS[0]}}),
                 fragment="99")
_json_file_error("json_caption_is_object", lambda ctx: dump({**ctx.posts(3), "99": {
    "image": "a.jpg", "caption": {"text": "x"}, "label": LABELS[0]}}), fragment="99")
_json_file_error("json_list_post_without_id", lambda ctx: dump([{"image": "a.jpg", "caption": "x"}]))
_json_file_error("json_list_id_null", lambda ctx: dump([{"id": None, "image": "a.jpg", "caption": "x"}]))
_json_file_error("json_unknown_extension", lambda ctx: dump(ctx.posts(3)), filename="d.txt")


@case("json_bom_accepted", "data", succeeds(audit_check(good=6)))
def _json_bom(ctx: Ctx) -> Proc:
    return ctx.inspect(ctx.write("d.json", b"\xef\xbb\xbf" + dump(ctx.posts(6)).encode("utf-8")))


@case("json_nul_in_caption", "data", succeeds(audit_check(good=6)))
def _json_nul_caption(ctx: Ctx) -> Proc:
    posts = ctx.posts(6)
    posts[next(iter(posts))]["caption"] += "\u0000 hidden"
    return ctx.inspect(ctx.write("d.json", dump(posts)))


@case("json_nul_in_image_name", "data",
      error("d.json", success=audit_check(good=5, faults={"bad": "unsafe_path|missing_image|unreadable_image"})),
      item="6")
def _json_nul_image(ctx: Ctx) -> Proc:
    posts = ctx.posts(5)
    posts["bad"] = {"image": "good\u0000.jpg", "caption": "x", "label": LABELS[0]}
    return ctx.inspect(ctx.write("d.json", dump(posts)))


@case("json_lone_surrogate_caption", "data", error("d.json", success=audit_check(good=6)))
def _json_surrogate(ctx: Ctx) -> Proc:
    text = dump(ctx.posts(6)).replace('"caption": "', '"caption": "\\ud800 ', 1)
    return ctx.inspect(ctx.write("d.json", text))


def _label_case(name: str, value: str, item: str = "11") -> None:
    """A label that is not a string (or is junk) must not silently become a class."""
    shown = json.loads(value) if value not in ("NaN", "Infinity") else value

    @case(name, "data", error("d.json", success=audit_check(good=6, faults={"bad": "bad_label|unknown_label"},
                                                             no_labels=[str(shown), "nan", "NaN", "inf"])), item)
    def act(ctx: Ctx) -> Proc:
        posts = ctx.posts(6)
        image = posts["0"]["image"]
        text = dump(posts)[:-2] + f',\n "bad": {{"image": "{image}", "caption": "x", "label": {value}}}\n}}'
        return ctx.inspect(ctx.write("d.json", text))


_label_case("json_label_nan", "NaN")
_label_case("json_label_number", "3")
_label_case("json_label_float", "1.5")
_label_case("json_label_infinity", "Infinity")
_label_case("json_label_bool", "true", item="")
_label_case("json_label_list", '["not-sarcasm"]', item="")
_label_case("json_label_object", '{"name": "not-sarcasm"}', item="")


@case("json_duplicate_ids_dict", "data", succeeds(audit_check(good=5, faults={"1": "duplicate_id"})))
def _json_dup_dict(ctx: Ctx) -> Proc:
    posts = list(ctx.posts(5).items())  # ids "0".."4"; "1" comes twice
    body = ",\n".join(f'"{pid}": {json.dumps(p, ensure_ascii=False)}' for pid, p in posts)
    extra = json.dumps(posts[1][1], ensure_ascii=False)
    return ctx.inspect(ctx.write("d.json", "{" + body + f',\n"{posts[1][0]}": {extra}' + "}"))


@case("json_duplicate_ids_list", "data", succeeds(audit_check(good=4, faults={"2": "duplicate_id"})))
def _json_dup_list(ctx: Ctx) -> Proc:
    rows = [{"id": pid, **p} for pid, p in ctx.posts(4).items()]
    return ctx.inspect(ctx.write("d.json", dump([*rows, rows[2]])))


@case("json_duplicate_field_in_post", "data",
      error("d.json", success=audit_check(good=5, faults={"bad": "duplicate_field|unknown_label|duplicate_id"})))
def _json_dup_field(ctx: Ctx) -> Proc:
    posts = ctx.posts(5)
    image = posts["0"]["image"]
    text = dump(posts)[:-2] + (f',\n "bad": {{"image": "{image}", "caption": "x", "label": "not-sarcasm", '
                               '"label": "image-sarcasm"}\n}')
    return ctx.inspect(ctx.write("d.json", text))


@case("json_empty_id_key", "data", error("d.json", success=audit_check(good=5, faults={"": "missing_id|empty_id"})))
def _json_empty_id(ctx: Ctx) -> Proc:
    posts = ctx.posts(5)
    posts[""] = dict(posts["0"])
    return ctx.inspect(ctx.write("d.json", dump(posts)))


@case("json_huge_caption_kept", "data", succeeds(audit_check(good=6, faults={"0": "long_text"})))
def _json_huge_caption(ctx: Ctx) -> Proc:
    posts = ctx.posts(6)
    posts["0"]["caption"] = "chữ " * 300_000
    return ctx.inspect(ctx.write("d.json", dump(posts)))


@case("json_empty_object_folds", "data", error("d.json"), item="smaller")
def _json_empty_folds(ctx: Ctx) -> Proc:
    return ctx.mmtune("folds", ctx.write("d.json", "{}"), "--images", ctx.shared.train_images,
                      "--out", ctx.tmp / "folds.csv")


@case("json_empty_list_train", "data", error("d.json"))
def _json_empty_train(ctx: Ctx) -> Proc:
    return ctx.mmtune("train", ctx.config(data={"train": str(ctx.write("d.json", "[]"))}))


# JSONL


def _jsonl_error(name: str, lines: Callable[[Ctx], list[str]], fragment: str, item: str = "") -> None:
    @case(name, "data", error(fragment), item)
    def act(ctx: Ctx) -> Proc:
        return ctx.inspect(ctx.write("d.jsonl", "\n".join(lines(ctx)) + "\n"))


_jsonl_error("jsonl_bad_line_middle", lambda ctx: [*jsonl_text(ctx, 3), "{oops", *jsonl_text(ctx, 2)], "d.jsonl:4")
_jsonl_error("jsonl_truncated_last_line", lambda ctx: [*jsonl_text(ctx, 3), jsonl_text(ctx, 1)[0][:-9]], "d.jsonl:4")
_jsonl_error("jsonl_line_is_array", lambda ctx: [*jsonl_text(ctx, 2), "[1, 2]"], "d.jsonl")
_jsonl_error("jsonl_nested_100k", lambda ctx: [*jsonl_text(ctx, 2), deep(100_000)], "d.jsonl:3", item="7")
_jsonl_error("jsonl_raw_control_char", lambda ctx: [*jsonl_text(ctx, 2), '{"id": "9", "caption": "a\x01b"}'],
             "d.jsonl:3")


@case("jsonl_latin1", "data", error("d.jsonl"))
def _jsonl_latin1(ctx: Ctx) -> Proc:
    text = "\n".join(jsonl_text(ctx, 3)).encode() + b'\n{"id": "9", "caption": "caf\xe9"}\n'
    return ctx.inspect(ctx.write("d.jsonl", text))


@case("jsonl_blank_lines_bom_crlf", "data", succeeds(audit_check(good=5)))
def _jsonl_blank(ctx: Ctx) -> Proc:
    return ctx.inspect(ctx.write("d.jsonl", ("\ufeff" + "\r\n\r\n".join(jsonl_text(ctx, 5)) + "\r\n").encode()))


@case("jsonl_nul_byte_between_lines", "data", error("d.jsonl", success=audit_check(good=4)))
def _jsonl_nul(ctx: Ctx) -> Proc:
    return ctx.inspect(ctx.write("d.jsonl", "\n".join(jsonl_text(ctx, 4)) + "\n\x00\n"))


@case("jsonl_label_number", "data", error("d.jsonl", success=audit_check(
        good=4, faults={"9": "bad_label|unknown_label"}, no_labels=["3"])), item="11")
def _jsonl_label_number(ctx: Ctx) -> Proc:
    image = ctx.shared.posts["0"]["image"]
    return ctx.inspect(ctx.write("d.jsonl", "\n".join([*jsonl_text(ctx, 4), json.dumps(
        {"id": "9", "image": image, "caption": "x", "label": 3})]) + "\n"))


@case("jsonl_label_nan", "data", error("d.jsonl", success=audit_check(
        good=4, faults={"9": "bad_label|unknown_label"}, no_labels=["nan", "NaN"])), item="11")
def _jsonl_label_nan(ctx: Ctx) -> Proc:
    image = ctx.shared.posts["0"]["image"]
    line = '{"id": "9", "image": "' + image + '", "caption": "x", "label": NaN}'
    return ctx.inspect(ctx.write("d.jsonl", "\n".join([*jsonl_text(ctx, 4), line]) + "\n"))


@case("jsonl_duplicate_ids", "data", succeeds(audit_check(good=4, faults={"0": "duplicate_id"})))
def _jsonl_dup(ctx: Ctx) -> Proc:
    lines = jsonl_text(ctx, 4)
    return ctx.inspect(ctx.write("d.jsonl", "\n".join([*lines, lines[0]]) + "\n"))


@case("jsonl_id_float_and_string_collide", "data", succeeds(audit_check(good=3, faults={"1": "duplicate_id"})))
def _jsonl_id_types(ctx: Ctx) -> Proc:
    posts = list(ctx.posts(3).values())
    lines = [json.dumps({"id": k, **p}, ensure_ascii=False) for k, p in zip(["1", "2", "3"], posts)]
    return ctx.inspect(ctx.write("d.jsonl", "\n".join([*lines, json.dumps({"id": 1, **posts[0]})]) + "\n"))


@case("jsonl_empty_file_train", "data", error("d.jsonl"))
def _jsonl_empty(ctx: Ctx) -> Proc:
    return ctx.mmtune("train", ctx.config(data={"train": str(ctx.write("d.jsonl", ""))}))


# CSV


@case("csv_unterminated_quote_swallows_rows", "data",
      error("d.csv", success=audit_check(good=3, faults={"q": "malformed_row|unterminated_quote|bad_row"})), item="18")
def _csv_quote(ctx: Ctx) -> Proc:
    rows = post_rows(ctx, 3, plain=True)
    text = "id,image,caption,label\n" + f'q,{rows[0][1]},"oops,not-sarcasm\n' + csv_text(rows).split("\n", 1)[1]
    return ctx.inspect(ctx.write("d.csv", text))


@case("csv_unterminated_quote_last_row", "data",
      error("d.csv", success=audit_check(good=3, faults={"9": "malformed_row|unterminated_quote|bad_row"})),
      item="18")
def _csv_quote_last(ctx: Ctx) -> Proc:
    rows = post_rows(ctx, 3, plain=True)
    return ctx.inspect(ctx.write("d.csv", csv_text(rows) + f'9,{rows[0][1]},"never closed\n'))


@case("csv_unterminated_quote_folds_count", "data", error("d.csv", success=lambda ctx, proc: None if len(
    csv_rows(ctx.tmp / "folds.csv")) >= 8 else ("silent_loss", f"folds.csv has {len(csv_rows(ctx.tmp / 'folds.csv'))}"
                                                 " rows of 9 records")), item="18")
def _csv_quote_folds(ctx: Ctx) -> Proc:
    rows = post_rows(ctx, 8, plain=True)
    text = "id,image,caption,label\n" + f'x,{rows[0][1]},"oops,not-sarcasm\n' + csv_text(rows).split("\n", 1)[1]
    return ctx.mmtune("folds", ctx.write("d.csv", text), "--images", ctx.shared.train_images, "-k", "2",
                      "--out", ctx.tmp / "folds.csv")


@case("csv_quoted_multiline_caption_ok", "data", succeeds(audit_check(good=4)))
def _csv_multiline(ctx: Ctx) -> Proc:
    rows = post_rows(ctx, 4)
    rows[1][2] = "line one\nline two, with comma"
    return ctx.inspect(ctx.write("d.csv", csv_text(rows)))


@case("csv_missing_column", "data", error("d.csv", "caption"))
def _csv_missing(ctx: Ctx) -> Proc:
    return ctx.inspect(ctx.write("d.csv", csv_text([r[:2] + r[3:] for r in post_rows(ctx, 3)],
                                                   header=("id", "image", "label"))))


@case("csv_extra_fields", "data", error("d.csv:3"))
def _csv_extra(ctx: Ctx) -> Proc:
    rows = post_rows(ctx, 3)
    rows[1].append("surplus")
    return ctx.inspect(ctx.write("d.csv", csv_text(rows)))


@case("csv_short_row", "data", error("d.csv:3", success=audit_check(good=3, faults={
    "1": "malformed_row|bad_row|missing_image|empty_text"})))
def _csv_short(ctx: Ctx) -> Proc:
    rows = post_rows(ctx, 4)
    rows[1] = rows[1][:1]
    return ctx.inspect(ctx.write("d.csv", csv_text(rows)))


@case("csv_empty_file", "data", error("d.csv"))
def _csv_empty(ctx: Ctx) -> Proc:
    return ctx.inspect(ctx.write("d.csv", ""))


@case("csv_header_only_train", "data", error("d.csv"))
def _csv_header_only(ctx: Ctx) -> Proc:
    return ctx.mmtune("train", ctx.config(data={"train": str(ctx.write("d.csv", "id,image,caption,label\n"))}))


@case("csv_bom_crlf_ok", "data", succeeds(audit_check(good=5)))
def _csv_bom(ctx: Ctx) -> Proc:
    return ctx.inspect(ctx.write("d.csv", ("\ufeff" + csv_text(post_rows(ctx, 5)).replace("\n", "\r\n")).encode()))


@case("csv_nul_byte", "data", error("d.csv", success=audit_check(good=4)))
def _csv_nul(ctx: Ctx) -> Proc:
    rows = post_rows(ctx, 4)
    rows[2][2] += "\x00"
    return ctx.inspect(ctx.write("d.csv", csv_text(rows)))


@case("csv_latin1", "data", error("d.csv"))
def _csv_latin1(ctx: Ctx) -> Proc:
    return ctx.inspect(ctx.write("d.csv", b"id,image,caption,label\n1,a.jpg,caf\xe9,not-sarcasm\n"))


@case("csv_utf16", "data", error("d.csv"))
def _csv_utf16(ctx: Ctx) -> Proc:
    return ctx.inspect(ctx.write("d.csv", csv_text(post_rows(ctx, 3)).encode("utf-16")))


@case("csv_duplicate_header_column", "data", error("d.csv", "caption"))
def _csv_dup_header(ctx: Ctx) -> Proc:
    rows = [[*r, "other caption"] for r in post_rows(ctx, 3)]
    return ctx.inspect(ctx.write("d.csv", csv_text(rows, header=("id", "image", "caption", "label", "caption"))))


@case("csv_empty_image_sep", "data", error("data.columns.image_sep"), item="9")
def _csv_empty_sep(ctx: Ctx) -> Proc:
    return ctx.inspect(ctx.write("d.csv", csv_text(post_rows(ctx, 3))), None, "data.columns.image_sep=")


@case("csv_empty_image_sep_in_config", "data", error("data.columns.image_sep"), item="9")
def _csv_empty_sep_config(ctx: Ctx) -> Proc:
    config = write_yaml(ctx.path("c.yaml"), {"data": {"columns": {"image_sep": ""}}})
    return ctx.inspect(ctx.write("d.csv", csv_text(post_rows(ctx, 3))), None, "--config", config)


@case("csv_empty_id", "data", error("d.csv:3"))
def _csv_empty_id(ctx: Ctx) -> Proc:
    rows = post_rows(ctx, 3)
    rows[1][0] = "  "
    return ctx.inspect(ctx.write("d.csv", csv_text(rows)))


@case("csv_duplicate_ids", "data", succeeds(audit_check(good=4, faults={"2": "duplicate_id"})))
def _csv_dup_ids(ctx: Ctx) -> Proc:
    rows = post_rows(ctx, 4)
    return ctx.inspect(ctx.write("d.csv", csv_text([*rows, rows[2]])))


@case("csv_semicolon_delimited", "data", error("d.csv"))
def _csv_semicolon(ctx: Ctx) -> Proc:
    return ctx.inspect(ctx.write("d.csv", csv_text(post_rows(ctx, 3)).replace(",", ";")))


@case("csv_field_over_128k", "data", succeeds(audit_check(good=3, faults={"0": "long_text"})))
def _csv_big_field(ctx: Ctx) -> Proc:
    rows = post_rows(ctx, 3)
    rows[0][2] = "từ " * 100_000
    return ctx.inspect(ctx.write("d.csv", csv_text(rows)))


# The data file itself is not a regular file


@case("data_file_is_fifo", "data", error("d.jsonl"))
def _data_fifo(ctx: Ctx) -> Proc:
    return ctx.inspect(fifo(ctx.tmp / "d.jsonl"))


@case("data_file_is_dev_zero", "data", error("d.jsonl"))
def _data_dev_zero(ctx: Ctx) -> Proc:
    (ctx.tmp / "d.jsonl").symlink_to("/dev/zero")
    return ctx.inspect(ctx.tmp / "d.jsonl")


@case("data_file_is_directory", "data", error("d.json"))
def _data_dir(ctx: Ctx) -> Proc:
    ctx.path("d.json").mkdir()
    return ctx.inspect(ctx.tmp / "d.json")


@case("data_file_missing", "data", error("nope.json"))
def _data_missing(ctx: Ctx) -> Proc:
    return ctx.inspect(ctx.tmp / "nope.json")


@case("data_format_override_wrong", "data", error("d.json"))
def _data_wrong_format(ctx: Ctx) -> Proc:
    return ctx.inspect(ctx.write("d.json", dump(ctx.posts(3))), None, "data.format=csv")


@case("data_unknown_format_value", "data", error("data.format"))
def _data_unknown_format(ctx: Ctx) -> Proc:
    return ctx.inspect(ctx.write("d.json", dump(ctx.posts(3))), None, "data.format=xml")


# ==============================================================================================
# images: symlinks out of the folder, FIFOs, devices, bombs, truncation, wrong formats, odd names

BAD_IMAGE = "unreadable_image|missing_image|unsafe_path"


def _image_case(name: str, plant: Callable[[Ctx, Path], str | list[str]], kinds: str = BAD_IMAGE, item: str = "",
                good_extra: int = 0, timeout: float = 30) -> None:
    """Four good posts plus post 'bad' whose image `plant` puts in the images folder; inspect must name it."""
    @case(name, "images", succeeds(audit_check(good=4 + good_extra, faults={"bad": kinds} if kinds else None)), item)
    def act(ctx: Ctx) -> Proc:
        folder, posts = ctx.images(4)
        posts["bad"] = {"image": plant(ctx, folder), "caption": "hostile image", "label": LABELS[2]}
        data = ctx.write("d.json", dump(posts))
        return ctx.mmtune("inspect", data, "--images", folder, "--json", ctx.tmp / "audit.json", timeout=timeout)


def _outside_secret(ctx: Ctx) -> Path:
    secret = ctx.path("secret/x.png")
    shutil.copy(ctx.shared.train_images / ctx.shared.posts["0"]["image"], secret)
    return secret


def _symlink(link: Path, target: Path | str) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


_image_case("img_symlink_absolute_outside",
            lambda ctx, d: (_symlink(d / "s.png", _outside_secret(ctx)), "s.png")[1], kinds="unsafe_path", item="3")
_image_case("img_symlink_relative_outside",
            lambda ctx, d: (_outside_secret(ctx), _symlink(d / "r.png", "../secret/x.png"), "r.png")[2],
            kinds="unsafe_path", item="3")
_image_case("img_symlinked_subfolder_outside",
            lambda ctx, d: (_outside_secret(ctx), _symlink(d / "sub", ctx.tmp / "secret"), "sub/x.png")[2],
            kinds="unsafe_path", item="3")
_image_case("img_symlink_chain_outside",
            lambda ctx, d: (_symlink(d / "b.png", _outside_secret(ctx)), _symlink(d / "a.png", "b.png"), "a.png")[2],
            kinds="unsafe_path", item="3")
_image_case("img_symlink_to_etc_passwd", lambda ctx, d: (_symlink(d / "p.jpg", "/etc/passwd"), "p.jpg")[1],
            kinds="unsafe_path|unreadable_image", item="3")
_image_case("img_symlink_inside_ok", lambda ctx, d: (_symlink(d / "i.jpg", "g0.jpg"), "i.jpg")[1], kinds="",
            good_extra=1)
_image_case("img_name_absolute", lambda ctx, d: str(_outside_secret(ctx)), kinds="unsafe_path")
_image_case("img_name_dotdot", lambda ctx, d: (_outside_secret(ctx), "../secret/x.png")[1], kinds="unsafe_path")
_image_case("img_name_backslash_dotdot", lambda ctx, d: (_outside_secret(ctx), "..\\secret\\x.png")[1],
            kinds="unsafe_path")
_image_case("img_name_windows_drive", lambda ctx, d: "C:\\secret\\x.png", kinds="unsafe_path|missing_image")
_image_case("img_fifo", lambda ctx, d: (fifo(d / "f.jpg"), "f.jpg")[1], item="4")
_image_case("img_dev_zero", lambda ctx, d: (_symlink(d / "z.jpg", "/dev/zero"), "z.jpg")[1], item="5")
_image_case("img_dev_urandom", lambda ctx, d: (_symlink(d / "u.jpg", "/dev/urandom"), "u.jpg")[1], item="5")
_image_case("img_dev_null", lambda ctx, d: (_symlink(d / "n.jpg", "/dev/null"), "n.jpg")[1])
_image_case("img_unix_socket", lambda ctx, d: (unix_socket(d / "s.jpg"), "s.jpg")[1])
_image_case("img_directory_named_jpg", lambda ctx, d: ((d / "dir.jpg").mkdir(), "dir.jpg")[1])
_image_case("img_zero_bytes", lambda ctx, d: ((d / "z.jpg").write_bytes(b""), "z.jpg")[1])
_image_case("img_truncated_jpeg", lambda ctx, d: ((d / "t.jpg").write_bytes((d / "g0.jpg").read_bytes()[:300]),
                                                  "t.jpg")[1])
_image_case("img_text_behind_jpg", lambda ctx, d: ((d / "t.jpg").write_text("not an image"), "t.jpg")[1])
_image_case("img_svg_behind_png", lambda ctx, d: ((d / "v.png").write_text(
    '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'), "v.png")[1])
_image_case("img_decompression_bomb", lambda ctx, d: (shutil.copy(ctx.shared.bomb, d / "b.png"), "b.png")[1])
_image_case("img_missing_file", lambda ctx, d: "nope.jpg", kinds="missing_image")
_image_case("img_empty_name", lambda ctx, d: "", kinds="missing_image")
_image_case("img_list_with_missing", lambda ctx, d: ["g1.jpg", "nope.jpg"], kinds="missing_image")
_image_case("img_name_with_newline", lambda ctx, d: "g0\n.jpg", kinds="missing_image|unsafe_path")
_image_case("img_name_is_folder_root", lambda ctx, d: ".", kinds=BAD_IMAGE)


def _png_header_lie(path: Path) -> None:
    """A PNG whose header claims 100000 x 100000 and whose data stops at once."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)))


_image_case("img_png_header_claims_huge", lambda ctx, d: (_png_header_lie(d / "h.png"), "h.png")[1])


def _pil_image(path: Path, mode: str, size: tuple[int, int] = (40, 40), fmt: str | None = None, **save: Any) -> None:
    from PIL import Image

    Image.new(mode, size, color=None).save(path, format=fmt, **save)


_image_case("img_png_behind_jpg_kept", lambda ctx, d: (_pil_image(d / "p.jpg", "RGB", fmt="PNG"), "p.jpg")[1],
            kinds="format_mismatch", good_extra=1)
_image_case("img_cmyk_jpeg_kept", lambda ctx, d: (_pil_image(d / "c.jpg", "CMYK"), "c.jpg")[1], kinds="",
            good_extra=1)
_image_case("img_16bit_png_kept", lambda ctx, d: (_pil_image(d / "i.png", "I;16"), "i.png")[1], kinds="",
            good_extra=1)
_image_case("img_gray_alpha_kept", lambda ctx, d: (_pil_image(d / "p.png", "LA"), "p.png")[1], kinds="",
            good_extra=1)
_image_case("img_extreme_aspect_kept", lambda ctx, d: (_pil_image(d / "w.png", "RGB", (400, 10)), "w.png")[1],
            kinds="extreme_aspect", good_extra=1)
_image_case("img_one_pixel_kept", lambda ctx, d: (_pil_image(d / "o.png", "RGB", (1, 1)), "o.png")[1], kinds="",
            good_extra=1)


@case("img_max_pixels_tiny_names_every_post", "images",
      succeeds(audit_check(good=0, faults={str(k): "unreadable_image" for k in range(4)})))
def _img_max_pixels(ctx: Ctx) -> Proc:
    folder, posts = ctx.images(4)
    return ctx.mmtune("inspect", ctx.write("d.json", dump(posts)), "--images", folder, "--json",
                      ctx.tmp / "audit.json", "data.image.max_pixels=100")


@case("img_images_folder_missing", "images",
      error("nope", success=audit_check(good=0, faults={str(k): "missing_image" for k in range(4)})))
def _img_folder_missing(ctx: Ctx) -> Proc:
    _, posts = ctx.images(4)
    return ctx.mmtune("inspect", ctx.write("d.json", dump(posts)), "--images", ctx.tmp / "nope", "--json",
                      ctx.tmp / "audit.json")


@case("img_images_folder_is_file", "images",
      error("images.txt", success=audit_check(good=0, faults={str(k): "missing_image|unreadable_image"
                                                               for k in range(4)})))
def _img_folder_file(ctx: Ctx) -> Proc:
    _, posts = ctx.images(4)
    return ctx.mmtune("inspect", ctx.write("d.json", dump(posts)), "--images", ctx.write("images.txt", "x"),
                      "--json", ctx.tmp / "audit.json")


@case("img_images_folder_symlinked_ok", "images", succeeds(audit_check(good=4)))
def _img_folder_symlink(ctx: Ctx) -> Proc:
    folder, posts = ctx.images(4)
    _symlink(ctx.tmp / "link", folder)
    return ctx.mmtune("inspect", ctx.write("d.json", dump(posts)), "--images", ctx.tmp / "link", "--json",
                      ctx.tmp / "audit.json")


def _train_with_bad_image(ctx: Ctx, plant: Callable[[Ctx, Path], str], timeout: float = 90) -> Proc:
    """A training file (the shared posts, images copied) with post 'bad' whose image is hostile."""
    folder = ctx.path("images")
    shutil.copytree(ctx.shared.train_images, folder, dirs_exist_ok=True)
    posts = dict(ctx.shared.posts)
    posts["bad"] = {"image": plant(ctx, folder), "caption": "hostile", "label": LABELS[2]}
    data = ctx.write("train.json", dump(posts))
    return ctx.mmtune("train", ctx.config(data={"train": str(data), "train_images": str(folder)}), timeout=timeout)


def skipped_named(fault: str) -> Check:
    def check(ctx: Ctx, proc: Proc) -> tuple[str, str] | None:
        problem = trained(ctx, proc)
        if problem:
            return problem
        if fault not in proc.output or "bad" not in proc.output:
            status = "security" if fault == "unsafe_path" else "silent_loss"
            return status, f"post 'bad' trained on or dropped without a {fault} line in the log"
        return None
    return check


@case("img_train_symlink_outside", "images", succeeds(skipped_named("unsafe_path")), item="3")
def _img_train_symlink(ctx: Ctx) -> Proc:
    return _train_with_bad_image(ctx, lambda ctx, d: (_symlink(d / "s.png", _outside_secret(ctx)), "s.png")[1])


@case("img_train_fifo", "images", succeeds(skipped_named("bad")), item="4")
def _img_train_fifo(ctx: Ctx) -> Proc:
    return _train_with_bad_image(ctx, lambda ctx, d: (fifo(d / "f.jpg"), "f.jpg")[1], timeout=60)


@case("img_predict_zero_byte_named", "images", succeeds(lambda ctx, proc: None if len(csv_rows(
    ctx.tmp / "p.csv")) == 4 and "bad" in proc.output else ("silent_loss", "post 'bad' not named, or rows lost")))
def _img_predict_zero(ctx: Ctx) -> Proc:
    folder, posts = ctx.images(4)
    (folder / "z.jpg").write_bytes(b"")
    posts["bad"] = {"image": "z.jpg", "caption": "x", "label": None}
    return ctx.mmtune("predict", ctx.shared.run, ctx.write("d.json", dump(posts)), "--images", folder,
                      "--out", ctx.tmp / "p.csv")


@case("img_predict_symlink_outside", "images", succeeds(lambda ctx, proc: None if len(csv_rows(
    ctx.tmp / "p.csv")) == 4 and "unsafe_path" in proc.output else ("security", "post 'bad' predicted from a file "
                                                                    "outside the images folder")), item="3")
def _img_predict_symlink(ctx: Ctx) -> Proc:
    folder, posts = ctx.images(4)
    _symlink(folder / "s.png", _outside_secret(ctx))
    posts["bad"] = {"image": "s.png", "caption": "x", "label": None}
    return ctx.mmtune("predict", ctx.shared.run, ctx.write("d.json", dump(posts)), "--images", folder,
                      "--out", ctx.tmp / "p.csv")


# ==============================================================================================
# configs: out-of-range numbers, NaN, encodings, YAML bombs and tags, unknown keys, bad labels


def _train_override(name: str, override: str, fragment: str, item: str = "10") -> None:
    """`mmtune train CFG key=value`: refused when the config is read, naming the key."""
    @case(name, "config", error(fragment), item)
    def act(ctx: Ctx) -> Proc:
        return ctx.mmtune("train", ctx.config(), override)


for _key, _value in [("train.batch_size", "-1"), ("train.grad_accum", "0"), ("seed", "-1"),
                     ("seed", "99999999999999999999"), ("model.fusion.dropout", "1.5"), ("train.num_workers", "-1"),
                     ("model.fusion.projection_dim", "-5"), ("model.fusion.projection_dim", "0"), ("train.lr", "-1"),
                     ("train.epochs", "-3"), ("train.warmup_ratio", "-1"), ("train.head_lr", ".nan")]:
    _train_override(f"train_{_key}={_value}", f"{_key}={_value}", _key)


@case("train_reference_batch_size=0_linear", "config", error("train.reference_batch_size"), item="10")
def _ref_batch(ctx: Ctx) -> Proc:
    return ctx.mmtune("train", ctx.config(), "train.reference_batch_size=0", "train.lr_scaling=linear")


@case("train_image_size=0", "config", error("data.image.size"), item="smaller")
def _image_size_zero(ctx: Ctx) -> Proc:
    return ctx.mmtune("train", ctx.config(), "data.image.size=0")


# Every other numeric key: `mmtune config` reads (and must check) the config without training.
_RANGE_CASES = [
    ("train.grad_accum", "-2"), ("train.epochs", "0"), ("model.fusion.dropout", "-0.1"),
    ("model.fusion.hidden_size", "0"),
    ("model.vilt.max_length", "0"), ("train.lr", ".inf"), ("train.head_lr", "-0.5"), ("train.warmup_ratio", "2"),
    ("train.weight_decay", "-1"), ("train.max_grad_norm", "-1"), ("train.label_smoothing", "1.5"),
    ("train.focal_gamma", "-1"), ("train.effective_number_beta", "1.5"), ("train.eval_every_steps", "-1"),
    ("train.save_every_steps", "-1"), ("train.early_stopping_patience", "-1"), ("train.log_every_steps", "0"),
    ("train.backbone_lr_factor", "-1"), ("train.val_fold", "-1"), ("train.effective_batch_size", "0"),
    ("cv.folds", "1"), ("cv.folds", "-2"), ("data.image.size", "-1"), ("data.image.max_pixels", "0"),
    ("data.image.max_aspect", "0.5"), ("data.text.max_words", "0"), ("data.text.extra_max_words", "-1"),
    ("data.image.augment.hflip", "2"), ("data.image.augment.rotation", "-5"), ("data.image.augment.crop", "0"),
    ("data.image.augment.translate", "-1"), ("data.image.augment.scale", "[1.2,0.8]"),
    ("model.freeze.last_n", "-1"), ("model.freeze.head_only_epochs", "-1"), ("model.lora.r", "0"),
    ("model.lora.dropout", "1.5"), ("model.vlm.max_images", "0"), ("model.vlm.image_size", "-448"),
    ("model.vlm.max_tiles", "0"), ("chat.max_length", "0"), ("dpo.beta", "-1"), ("seed", ".nan"),
    ("train.batch_size", "1.5"), ("train.epochs", "true"), ("train.lr", "banana"), ("train.time_budget", "-5s"),
    ("train.time_budget", "banana"), ("data.image.pad_color", "[300,0,0]"),
]
for _key, _value in _RANGE_CASES:
    def _config_act(ctx: Ctx, override: str = f"{_key}={_value}") -> Proc:
        return ctx.mmtune("config", "--config", ctx.config(), override)

    CASES.append(Case(f"config_{_key}={_value}", "config", "10", _config_act, error(_key)))


def _config_file_case(name: str, content: str | bytes, fragment: str = "c.yaml", item: str = "",
                      command: str = "train") -> None:
    @case(name, "config", error(fragment), item)
    def act(ctx: Ctx) -> Proc:
        return ctx.mmtune(command, ctx.write("c.yaml", content(ctx) if callable(content) else content))


_config_file_case("config_not_utf8", b"name: caf\xe9\n", item="8")
_config_file_case("config_utf16", "name: x\n".encode("utf-16"))
_config_file_case("config_yaml_syntax_error", "train: {epochs: 1\nmodel: [\n")
_config_file_case("config_top_level_list", "- a\n- b\n")
_config_file_case("config_top_level_scalar", "just text\n")
_config_file_case("config_unknown_top_key", "trian: {epochs: 1}\n", fragment="trian")
_config_file_case("config_unknown_nested_key", "train: {bacth_size: 4}\n", fragment="bacth_size")
_config_file_case("config_section_not_mapping", "train: 5\n", fragment="train")
_config_file_case("config_custom_tag", "name: !foo bar\n")
_config_file_case("config_python_tag_payload",
                  lambda ctx: f'name: !!python/object/apply:os.system ["touch {ctx.marker}"]\n')
_config_file_case("config_yaml_bomb", "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                  "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                  "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
                  "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
                  "data: {columns: {extra_text: *h}}\n", fragment="c.yaml|data.columns.extra_text")
_config_file_case("config_yaml_bomb_in_labels", "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                  "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                  "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
                  "data: {labels: *f}\n", fragment="c.yaml|data.labels", command="config")


@case("config_file_missing", "config", error("nope.yaml"))
def _config_missing(ctx: Ctx) -> Proc:
    return ctx.mmtune("train", ctx.tmp / "nope.yaml")


@case("config_file_is_directory", "config", error("c.yaml"))
def _config_dir(ctx: Ctx) -> Proc:
    ctx.path("c.yaml").mkdir()
    return ctx.mmtune("train", ctx.tmp / "c.yaml")


@case("config_file_is_fifo", "config", error("c.yaml"))
def _config_fifo(ctx: Ctx) -> Proc:
    return ctx.mmtune("train", fifo(ctx.tmp / "c.yaml"), timeout=30)


@case("config_file_is_dev_zero", "config", error("c.yaml"))
def _config_zero(ctx: Ctx) -> Proc:
    _symlink(ctx.tmp / "c.yaml", "/dev/zero")
    return ctx.mmtune("train", ctx.tmp / "c.yaml", timeout=30)


def _override_case(name: str, override: str, fragment: str, item: str = "", success: Check | None = None) -> None:
    @case(name, "config", error(fragment, success=success), item)
    def act(ctx: Ctx) -> Proc:
        return ctx.mmtune("config", "--config", ctx.config(), override)


_override_case("override_unknown_key", "train.foo=1", "train.foo")
_override_case("override_bad_yaml", "train.epochs=[", "train.epochs")
_override_case("override_python_tag", "name=!!python/object/apply:os.system [true]", "name",
               success=lambda ctx, proc: None)  # taken as plain text is fine: the marker decides
_override_case("override_bad_enum_loss", "train.loss=banana", "train.loss")
_override_case("override_bad_enum_resize", "data.image.resize=banana", "data.image.resize")
_override_case("override_bad_on_bad_row", "data.on_bad_row=banana", "data.on_bad_row")
_override_case("override_empty_id_column", "data.columns.id=", "data.columns.id")
_override_case("override_empty_text_column", "data.columns.text=", "data.columns.text")


def _labels_case(name: str, labels: str, fragment: str, item: str = "11") -> None:
    @case(name, "config", error(fragment), item)
    def act(ctx: Ctx) -> Proc:
        return ctx.mmtune("train", ctx.config(), f"data.labels={labels}")


_labels_case("labels_repeated", "[not-sarcasm,not-sarcasm,image-sarcasm,multi-sarcasm,text-sarcasm]", "data.labels")
_labels_case("labels_numeric", "[1,2,3,4]", "data.labels")
_labels_case("labels_null_entry", "[null,not-sarcasm,image-sarcasm,multi-sarcasm,text-sarcasm]", "data.labels")
_labels_case("labels_empty_string", "['',not-sarcasm,image-sarcasm,multi-sarcasm,text-sarcasm]", "data.labels")
_labels_case("labels_single", "[not-sarcasm]", "data.labels|at least 2 labels", item="")
_labels_case("labels_empty_list", "[]", "data.labels|at least 2 labels", item="")
_labels_case("labels_not_a_list", "not-sarcasm", "data.labels", item="")


@case("labels_match_no_post", "config", error("skipped|unknown_label"), item="smaller")
def _labels_none_match(ctx: Ctx) -> Proc:
    proc = ctx.mmtune("train", ctx.config(), "data.labels=[cat,dog]")
    if proc.returncode == 2 and "cv.folds" in proc.last_line():
        raise Finding("wrong", f"error blames cv.folds, not the skipped posts: {proc.last_line()[:150]}")
    return proc


@case("val_labels_all_null", "config", error("data.val|val.json"), item="13")
def _val_null(ctx: Ctx) -> Proc:
    posts = {pid: {**p, "label": None} for pid, p in ctx.posts(8).items()}
    return ctx.mmtune("train", ctx.config(data={"val": str(ctx.write("val.json", dump(posts)))}))


def _test_outputs(ctx: Ctx, proc: Proc) -> tuple[str, str] | None:
    if not (ctx.tmp / "run" / "test_predictions.csv").exists():
        return "silent_loss", "exit 0 without test_predictions.csv and without naming data.test"
    return None


@case("test_all_posts_dropped", "config", error("data.test|test.json", success=_test_outputs), item="13")
def _test_dropped(ctx: Ctx) -> Proc:
    posts = {pid: {**p, "image": "nope.jpg", "label": None} for pid, p in ctx.posts(6).items()}
    return ctx.mmtune("train", ctx.config(data={"test": str(ctx.write("test.json", dump(posts)))}))


@case("vilt_missing_path", "config", error("model.name"), item="17")
def _vilt_missing(ctx: Ctx) -> Proc:
    return ctx.mmtune("train", ctx.config(), "model.kind=vilt", f"model.name={ctx.tmp / 'nope'}")


@case("vilt_folder_not_vilt", "config", error("model.name"), item="17")
def _vilt_not_vilt(ctx: Ctx) -> Proc:
    return ctx.mmtune("train", ctx.config(), "model.kind=vilt", f"model.name={ctx.shared.bert}")


@case("fusion_text_encoder_missing", "config", error("model.fusion.text_encoder"))
def _fusion_missing(ctx: Ctx) -> Proc:
    return ctx.mmtune("train", ctx.config(), f"model.fusion.text_encoder={ctx.tmp / 'nope'}")


@case("fusion_text_encoder_corrupt_config", "config", error("model.fusion.text_encoder|config.json"))
def _fusion_corrupt(ctx: Ctx) -> Proc:
    broken = Path(shutil.copytree(ctx.shared.bert, ctx.tmp / "bert"))
    (broken / "config.json").write_text("{broken", encoding="utf-8")
    return ctx.mmtune("train", ctx.config(), f"model.fusion.text_encoder={broken}")


@case("fusion_image_encoder_is_text_model", "config", error("model.fusion.image_encoder"))
def _fusion_swapped(ctx: Ctx) -> Proc:
    return ctx.mmtune("train", ctx.config(), f"model.fusion.image_encoder={ctx.shared.bert}")


@case("model_kind_unknown", "config", error("model.kind"))
def _kind_unknown(ctx: Ctx) -> Proc:
    return ctx.mmtune("train", ctx.config(), "model.kind=banana")


@case("on_bad_row_error_names_post", "config", error("d.json", "bad", "missing_image"))
def _on_bad_row_error(ctx: Ctx) -> Proc:
    posts = {**ctx.posts(8), "bad": {"image": "nope.jpg", "caption": "x", "label": LABELS[0]}}
    return ctx.mmtune("train", ctx.config(data={"train": str(ctx.write("d.json", dump(posts)))}),
                      "data.on_bad_row=error")


@case("time_budget_is_process_wall_time", "config", item="22", expect=succeeds(
    lambda ctx, proc: None if proc.seconds <= 10 + 3 else ("wrong",
                                                           f"train.time_budget=10s took {proc.seconds:.1f} s")))
def _budget(ctx: Ctx) -> Proc:
    # The slack (3 s) covers one evaluation and save; start-up and data loading are inside the budget.
    return ctx.mmtune("train", ctx.config(), "train.time_budget=10s", "train.epochs=500")


# ==============================================================================================
# run folders: tampered pickles, truncated weights/state/config, edited config, clashing outputs


def _resume(ctx: Ctx, *extra: str) -> Proc:
    return ctx.mmtune("train", ctx.run_config(), "--resume", "train.epochs=2", *extra)


def _predict(ctx: Ctx, run_dir: Path | None = None, out: Path | None = None) -> Proc:
    return ctx.mmtune("predict", run_dir or ctx.tmp / "run", ctx.shared.test, "--images", ctx.shared.test_images,
                      "--out", out or ctx.tmp / "p.csv")


def _tamper_case(name: str, relative: str, tamper: Callable[[Ctx, Path], None], command: Callable[[Ctx], Proc],
                 item: str, fragment: str | None = None, success: Check | None = None) -> None:
    """A copy of the shared run with one file tampered with; `success`: a file mmtune may rightly not read."""
    @case(name, "run_folder", error(fragment or relative.split("/")[-1], success=success), item)
    def act(ctx: Ctx) -> Proc:
        ctx.copy_run()
        tamper(ctx, ctx.tmp / "run" / relative)
        return command(ctx)


def _truncate(ctx: Ctx, path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])


def _garbage(ctx: Ctx, path: Path) -> None:
    path.write_bytes(b"\x00garbage" * 10)


def _empty(ctx: Ctx, path: Path) -> None:
    path.write_bytes(b"")


for _file in ("optimizer.pt", "scheduler.pt", "rng-0.safetensors"):
    _tamper_case(f"pickle_payload_last_{_file}", f"last/{_file}", evil_pickle, _resume, "1")
    _tamper_case(f"garbage_last_{_file}", f"last/{_file}", _garbage, _resume, "1")
# The RNG state of older mmtune versions (a pickle): never read again, so a payload there must not run.
_tamper_case("pickle_payload_last_rng-0.pt", "last/rng-0.pt", evil_pickle, _resume, "1", success=trained)
_tamper_case("pickle_payload_last_scaler.pt", "last/scaler.pt", evil_pickle, _resume, "1", success=trained)
_tamper_case("empty_last_optimizer.pt", "last/optimizer.pt", _empty, _resume, "1")
_tamper_case("missing_last_optimizer.pt", "last/optimizer.pt", lambda ctx, p: p.unlink(), _resume, "14")
_tamper_case("pickle_payload_best_weights", "best/trainable.safetensors", evil_pickle, _predict, "1")
_tamper_case("truncated_best_weights_predict", "best/trainable.safetensors", _truncate, _predict, "14")
_tamper_case("truncated_last_weights_resume", "last/trainable.safetensors", _truncate, _resume, "14")
_tamper_case("truncated_trainer_state_resume", "last/trainer_state.json", _truncate, _resume, "14")
_tamper_case("trainer_state_is_list", "last/trainer_state.json", lambda ctx, p: p.write_text("[]"), _resume, "14")
_tamper_case("trainer_state_wrong_types", "last/trainer_state.json", lambda ctx, p: p.write_text(
    json.dumps({**json.loads(p.read_text()), "global_step": "many", "epoch": None})), _resume, "14")
_tamper_case("trainer_state_unknown_field", "last/trainer_state.json", lambda ctx, p: p.write_text(
    json.dumps({**json.loads(p.read_text()), "surprise": 1})), _resume, "14")
_tamper_case("truncated_best_metrics_json", "best/metrics.json", _truncate, _resume, "14", success=trained)
_tamper_case("truncated_run_config_predict", "config.yaml", _truncate, _predict, "14")
_tamper_case("run_config_python_tag_predict", "config.yaml", lambda ctx, p: p.write_text(
    f'name: !!python/object/apply:os.system ["touch {ctx.marker}"]\n' + p.read_text()), _predict, "14")


def _edit_config(key: str, value: Any) -> Callable[[Ctx, Path], None]:
    def edit(ctx: Ctx, path: Path) -> None:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        section, _, name = key.rpartition(".")
        target = config
        for part in section.split(".") if section else []:
            target = target[part]
        target[name] = value
        write_yaml(path, config)
    return edit


_tamper_case("edited_config_projection_dim_predict", "config.yaml", _edit_config("model.fusion.projection_dim", 32),
             _predict, "14", fragment="config.yaml|best")
_tamper_case("edited_config_labels_predict", "config.yaml", _edit_config("data.labels", LABELS[:3]),
             _predict, "14", fragment="config.yaml|best|data.labels")
_tamper_case("edited_config_fusion_predict", "config.yaml", _edit_config("model.fusion.method", "gated"),
             _predict, "14", fragment="config.yaml|best")
_tamper_case("edited_config_encoder_missing_predict", "config.yaml",
             _edit_config("model.fusion.text_encoder", "/nonexistent/bert"), _predict, "14",
             fragment="model.fusion.text_encoder|/nonexistent/bert")
_tamper_case("edited_config_projection_dim_resume", "config.yaml", _edit_config("model.fusion.projection_dim", 32),
             _resume, "14", fragment="config.yaml")


@case("truncated_metrics_jsonl_resume", "run_folder", error("metrics.jsonl", success=trained), item="14")
def _metrics_truncated(ctx: Ctx) -> Proc:
    ctx.copy_run()
    _truncate(ctx, ctx.tmp / "run" / "metrics.jsonl")
    return _resume(ctx)


def _predict_nothing(name: str, build: Callable[[Ctx], tuple[Path, Path]], fragment: str) -> None:
    """predict with no usable post: exit 2 naming why, never an empty or missing CSV."""
    @case(name, "run_folder", error(fragment), "13")
    def act(ctx: Ctx) -> Proc:
        data, images = build(ctx)
        return ctx.mmtune("predict", ctx.shared.run, data, "--images", images, "--out", ctx.tmp / "p.csv")


_predict_nothing("predict_empty_object", lambda ctx: (ctx.write("d.json", "{}"), ctx.shared.test_images), "d.json")
_predict_nothing("predict_images_folder_missing", lambda ctx: (ctx.shared.test, ctx.tmp / "nope"), "nope|missing_image")
_predict_nothing("predict_all_labels_unknown", lambda ctx: (ctx.write("d.json", dump(
    {pid: {**p, "label": "cat"} for pid, p in ctx.posts(6).items()})), ctx.shared.train_images), "unknown_label|cat")


@case("output_dir_is_a_file", "run_folder", error("output_dir|run"), item="12")
def _output_file(ctx: Ctx) -> Proc:
    ctx.write("run", "I am a file")
    return ctx.mmtune("train", ctx.config())


def _clash_case(name: str, act: Callable[[Ctx], tuple[Path, Proc]], fragment: str, item: str = "19",
                family: str = "run_folder", success: Check | None = None) -> None:
    """A command whose output would overwrite its input (or another output): exit 2 naming it, input intact."""
    def wrapped(ctx: Ctx) -> Proc:
        victim, proc = act(ctx)
        loss = file_unchanged(victim, ctx.victim_before)
        if loss:
            raise Finding(*loss)
        return proc

    CASES.append(Case(name, family, item, wrapped, error(fragment, success=success)))


@case("predict_out_is_directory", "run_folder", error("out", success=None), item="12")
def _predict_out_dir(ctx: Ctx) -> Proc:
    ctx.path("outdir").mkdir()
    proc = _predict(ctx, ctx.shared.run, ctx.tmp / "outdir")
    stray = [p.name for p in ctx.tmp.iterdir() if p.name.endswith(".tmp")]
    if stray and proc.returncode == 2 and "Traceback" not in proc.output:
        raise Finding("wrong", f"exit 2 but left {stray} behind")
    return proc


def _keep(ctx: Ctx, path: Path) -> Path:
    ctx.victim_before = path.read_bytes()
    return path


def _predict_over_data(ctx: Ctx) -> tuple[Path, Proc]:
    data = _keep(ctx, ctx.write("test.json", ctx.shared.test.read_text(encoding="utf-8")))
    return data, ctx.mmtune("predict", ctx.shared.run, data, "--images", ctx.shared.test_images, "--out", data)


def _predict_over_run_config(ctx: Ctx) -> tuple[Path, Proc]:
    run_dir = ctx.copy_run()
    config = _keep(ctx, run_dir / "config.yaml")
    return config, ctx.mmtune("predict", run_dir, ctx.shared.test, "--images", ctx.shared.test_images, "--out", config)


def _folds_over_data(ctx: Ctx) -> tuple[Path, Proc]:
    data = _keep(ctx, ctx.write("d.csv", csv_text(post_rows(ctx, 8))))
    return data, ctx.mmtune("folds", data, "--images", ctx.shared.train_images, "-k", "2", "--out", data)


def _inspect_json_over_data(ctx: Ctx) -> tuple[Path, Proc]:
    data = _keep(ctx, ctx.write("d.json", dump(ctx.posts(6))))
    return data, ctx.mmtune("inspect", data, "--images", ctx.shared.train_images, "--json", data)


def _report_over_predictions(ctx: Ctx) -> tuple[Path, Proc]:
    run_dir = ctx.copy_run()
    victim = _keep(ctx, run_dir / "val_predictions.csv")
    return victim, ctx.mmtune("report", run_dir, "--out", victim)


_clash_case("predict_out_equals_data_file", _predict_over_data, "test.json")
_clash_case("predict_out_equals_run_config", _predict_over_run_config, "config.yaml")
_clash_case("folds_out_equals_data_file", _folds_over_data, "d.csv")
_clash_case("inspect_json_equals_data_file", _inspect_json_over_data, "d.json")
_clash_case("report_out_equals_val_predictions", _report_over_predictions, "val_predictions.csv")


# ==============================================================================================
# kills: SIGKILL / SIGTERM at several moments, then --resume must end like an uninterrupted run

KILL_TRAIN = {"epochs": 3, "save_every_steps": 2}


def _comparable_metrics(path: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{k: v for k, v in line.items() if k != "elapsed_s"} for line in lines]


def same_as_reference(ctx: Ctx, proc: Proc) -> tuple[str, str] | None:
    """The resumed run ends exactly like the uninterrupted reference: predictions and metrics lines."""
    run_dir, reference = ctx.tmp / "run", ctx.shared.root / "kill-reference"
    problem = trained(ctx, proc)
    if problem:
        return problem
    steps = [line["step"] for line in _comparable_metrics(run_dir / "metrics.jsonl")]
    if len(steps) != len(set(steps)):
        return "wrong", f"metrics.jsonl repeats a step after resume: steps {steps}"
    for name in ("val_predictions.csv", "test_predictions.csv"):
        if not (run_dir / name).exists():
            return "silent_loss", f"no {name} after resume"
        if (run_dir / name).read_bytes() != (reference / name).read_bytes():
            return "wrong", f"{name} differs from the uninterrupted run's"
    if _comparable_metrics(run_dir / "metrics.jsonl") != _comparable_metrics(reference / "metrics.jsonl"):
        return "wrong", "metrics.jsonl differs from the uninterrupted run's"
    return None


def _state_step(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "last" / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
    except (OSError, ValueError, KeyError):
        return -1


def _metric_lines(run_dir: Path) -> int:
    try:
        return sum(1 for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line.strip())
    except OSError:
        return 0


def interrupt(ctx: Ctx, args: list[object], when: Callable[[Path], bool], sig: int) -> Proc:
    """Start `mmtune ARGS`, send `sig` as soon as `when(run_dir)` holds, and return the interrupted process."""
    started = time.monotonic()
    process = start(args, ctx.tmp)
    run_dir = ctx.tmp / "run"
    while process.poll() is None and time.monotonic() - started < TIMEOUT:
        if when(run_dir):
            process.send_signal(sig)
            break
        time.sleep(0.002)
    else:
        if process.poll() is not None:
            raise Finding("wrong", "[harness] the run ended before the moment to interrupt it came")
    proc = finish(process, args, started, TIMEOUT)
    ctx.procs.append(proc)
    if "Traceback" in proc.output:
        raise Finding("traceback", f"the interrupted run: {traceback_line(proc)}")
    return proc


def _kill_case(name: str, moments: Sequence[Callable[[Path], bool]], item: str = "", sig: int = signal.SIGKILL,
               exits: tuple[int, ...] = (0, 130)) -> None:
    """Interrupt the run at each moment in turn (resuming in between), then resume it to the end."""
    @case(name, "kill", succeeds(same_as_reference), item)
    def act(ctx: Ctx) -> Proc:
        config = ctx.config(train=KILL_TRAIN)
        for k, moment in enumerate(moments):
            proc = interrupt(ctx, ["train", config, *(["--resume"] if k else [])], moment, sig)
            if sig == signal.SIGTERM and proc.returncode not in exits:
                raise Finding("wrong", f"SIGTERM: exit {proc.returncode}, expected one of {exits} (save and stop)")
        return ctx.mmtune("train", config, "--resume", timeout=120)


_kill_case("sigkill_during_startup", [lambda run_dir: (run_dir / "config.yaml").exists()])
_kill_case("sigkill_after_first_save", [lambda run_dir: _state_step(run_dir) >= 2])
_kill_case("sigkill_mid_save", [lambda run_dir: (run_dir / "last.tmp").exists() and _state_step(run_dir) >= 2])
_kill_case("sigkill_after_metrics_line_before_save", [lambda run_dir: _metric_lines(run_dir) >= 1], item="21")
_kill_case("sigkill_after_second_metrics_line", [lambda run_dir: _metric_lines(run_dir) >= 2], item="21")
_kill_case("sigkill_while_writing_outputs", [lambda run_dir: (run_dir / "val_predictions.csv").exists()])
_kill_case("sigkill_twice", [lambda run_dir: _state_step(run_dir) >= 2, lambda run_dir: _state_step(run_dir) >= 6])
_kill_case("sigterm_mid_epoch", [lambda run_dir: _state_step(run_dir) >= 2], sig=signal.SIGTERM)
_kill_case("sigterm_during_startup", [lambda run_dir: (run_dir / "config.yaml").exists()], sig=signal.SIGTERM,
           exits=(0, 130, -signal.SIGTERM))


# ==============================================================================================
# concurrency: two trains in one output_dir, resume while running, stale locks


def _both(ctx: Ctx, first: list[object], second: list[object], second_when: Callable[[Path], bool]) -> list[Proc]:
    started = time.monotonic()
    a = start(first, ctx.tmp)
    while a.poll() is None and not second_when(ctx.tmp / "run") and time.monotonic() - started < TIMEOUT:
        time.sleep(0.01)
    b_started = time.monotonic()
    b = start(second, ctx.tmp)
    procs = [finish(a, first, started, 2 * TIMEOUT), finish(b, second, b_started, 2 * TIMEOUT)]
    ctx.procs.extend(procs)
    return procs


def one_refused(ctx: Ctx, procs: list[Proc]) -> Proc:
    """Exactly one of two runs into one folder trains; the other is exit 2 naming the folder."""
    for proc in procs:
        if proc.timed_out:
            raise Finding("hang", f"{' '.join(proc.args[:2])} ran past its timeout")
        if "Traceback" in proc.output:
            raise Finding("traceback", traceback_line(proc))
    codes = sorted(proc.returncode for proc in procs)
    if codes == [0, 0]:
        raise Finding("wrong", "both runs wrote into one output_dir (no lock)")
    if codes != [0, 2]:
        raise Finding("wrong", f"exit codes {codes}, expected one 0 and one 2")
    return next(proc for proc in procs if proc.returncode == 2)


@case("two_trains_one_output_dir", "concurrency", error("run|lock"), item="20")
def _two_trains(ctx: Ctx) -> Proc:
    config = ctx.config(train={"epochs": 2})
    return one_refused(ctx, _both(ctx, ["train", config], ["train", config], lambda run_dir: run_dir.exists()))


@case("two_trains_started_together", "concurrency", error("run|lock"), item="20")
def _two_trains_together(ctx: Ctx) -> Proc:
    config = ctx.config(train={"epochs": 2})
    return one_refused(ctx, _both(ctx, ["train", config], ["train", config], lambda run_dir: True))


@case("resume_while_running", "concurrency", error("run|lock"), item="20")
def _resume_running(ctx: Ctx) -> Proc:
    # Long enough that the first run still holds the folder when the second has started up (seconds of imports).
    config = ctx.config(train={"epochs": 400, "save_every_steps": 1, "time_budget": "45s"})
    return one_refused(ctx, _both(ctx, ["train", config], ["train", config, "--resume"],
                                  lambda run_dir: _state_step(run_dir) >= 1))


@case("stale_lock_of_dead_process_taken_over", "concurrency", succeeds(trained), item="20")
def _stale_lock(ctx: Ctx) -> Proc:
    dead = subprocess.Popen(["true"])
    dead.wait()
    run_dir = ctx.path("run")
    run_dir.mkdir()
    for name in (".lock", "lock", ".mmtune.lock", "run.lock", "mmtune.lock", ".run.lock"):
        (run_dir / name).write_text(f"{dead.pid}\n")
    return ctx.mmtune("train", ctx.config())


@case("garbage_lock_file", "concurrency", error("lock", success=trained), item="20")
def _garbage_lock(ctx: Ctx) -> Proc:
    run_dir = ctx.path("run")
    run_dir.mkdir()
    for name in (".lock", "lock", ".mmtune.lock", "run.lock", "mmtune.lock", ".run.lock"):
        (run_dir / name).write_bytes(b"\xff\xfe not a pid")
    return ctx.mmtune("train", ctx.config())


@case("two_predicts_one_out", "concurrency", succeeds(lambda ctx, proc: None if len(csv_rows(
    ctx.tmp / "p.csv")) == 12 else ("wrong", "p.csv is not one whole prediction file")))
def _two_predicts(ctx: Ctx) -> Proc:
    args = ["predict", ctx.shared.run, ctx.shared.test, "--images", ctx.shared.test_images, "--out", ctx.tmp / "p.csv"]
    procs = _both(ctx, args, args, lambda run_dir: True)
    for proc in procs:
        if "Traceback" in proc.output or proc.returncode != 0:
            return proc
    return procs[-1]


@case("two_inspects_one_json", "concurrency", succeeds(audit_check(good=8)))
def _two_inspects(ctx: Ctx) -> Proc:
    data = ctx.write("d.json", dump(ctx.posts(8)))
    args = ["inspect", data, "--images", ctx.shared.train_images, "--json", ctx.tmp / "audit.json"]
    procs = _both(ctx, args, args, lambda run_dir: True)
    return next((p for p in procs if p.returncode != 0 or "Traceback" in p.output), procs[-1])


@case("cv_twice_one_output_dir", "concurrency", error("run|lock|fold"), item="20")
def _two_cvs(ctx: Ctx) -> Proc:
    config = ctx.config(cv={"folds": 2})
    return one_refused(ctx, _both(ctx, ["cv", config], ["cv", config], lambda run_dir: run_dir.exists()))


# ==============================================================================================
# report content: markup and template placeholders in labels, captions and ids; mathtext; --gallery

XSS = "XSSMARK"


def report_run(ctx: Ctx, labels: Sequence[str], captions: Sequence[str], ids: Sequence[str] | None = None,
               name: str = "hostile") -> Path:
    """A finished-looking run folder whose every validation post is misclassified (all go to the gallery)."""
    ids = list(ids or [str(k) for k in range(len(captions))])
    images = list(ctx.shared.posts.values())
    posts = {pid: {"image": images[k]["image"], "caption": caption, "label": labels[k % len(labels)]}
             for k, (pid, caption) in enumerate(zip(ids, captions))}
    data = ctx.write("val.json", json.dumps(posts))  # ASCII escapes: a lone surrogate must reach mmtune intact
    run_dir = ctx.path("run")
    run_dir.mkdir(exist_ok=True)
    config = yaml.safe_load((ctx.shared.run / "config.yaml").read_text(encoding="utf-8"))
    config.update(name=name, output_dir=str(run_dir))
    config["data"].update(train=str(data), train_images=str(ctx.shared.train_images), val=None, test=None,
                          labels=list(labels))
    write_yaml(run_dir / "config.yaml", config)
    k_labels = len(labels)
    with (run_dir / "val_predictions.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", *(f"p_{label}" for label in labels), "gold"])
        for k, pid in enumerate(ids):
            gold, predicted = k % k_labels, (k + 1) % k_labels
            probs = [0.7 if j == predicted else 0.3 / (k_labels - 1) for j in range(k_labels)]
            writer.writerow([pid, labels[predicted], *(f"{p:.6f}" for p in probs), labels[gold]])
    return run_dir


def page_is_inert(captions: Sequence[str]) -> Check:
    """Parsed as a browser would: no element or attribute came from data, and the gallery JSON is whole."""
    def check(ctx: Ctx, proc: Proc) -> tuple[str, str] | None:
        import html5lib

        page = (ctx.tmp / "report.html").read_text(encoding="utf-8")
        tree = html5lib.parse(page, namespaceHTMLElements=False)
        scripts = []
        for element in tree.iter():
            if not isinstance(element.tag, str):
                continue
            events = [name for name in element.attrib if name.lower().startswith("on")]
            if events or XSS in element.tag or any(XSS in value for value in element.attrib.values()):
                return "security", f"<{element.tag} {' '.join(element.attrib)[:60]}> came from data"
            if element.tag == "script":
                scripts.append(element)
        data = [s for s in scripts if s.get("id") == "gallery-data"]
        code = [s for s in scripts if s.get("id") != "gallery-data"]
        if len(code) > 1 or any(XSS in (s.text or "") for s in code):
            return "security", f"{len(code)} script elements run (the page has 1)"
        if not code:
            return "wrong", "the page's own script was swallowed by the data block: the gallery is dead"
        if len(data) != 1:
            return "wrong", "the gallery data block is gone"
        try:
            rows = json.loads(data[0].text or "")["rows"]
        except (ValueError, KeyError) as exc:
            return "wrong", f"the gallery JSON is broken ({type(exc).__name__})"
        shown = sorted(row["text"] for row in rows)
        # A lone surrogate cannot be written as UTF-8: the readers repair it to U+FFFD (an invalid_unicode fault).
        if shown != sorted(re.sub("[\ud800-\udfff]", "\ufffd", caption) for caption in captions):
            return "wrong", f"the gallery shows {len(shown)} of {len(captions)} captions, or altered ones"
        return None
    return check


def _report_case(name: str, labels: Sequence[str], captions: Sequence[str], ids: Sequence[str] | None = None,
                 item: str = "2", run_name: str = "hostile") -> None:
    @case(name, "report", succeeds(page_is_inert(captions)), item)
    def act(ctx: Ctx) -> Proc:
        return ctx.mmtune("report", report_run(ctx, labels, captions, ids, run_name), "--out", ctx.tmp / "report.html")


_IMG = f'"><img src=x onerror=alert("{XSS}")>'
_report_case("report_label_names_placeholder_caption_img", ["{{gallery_json}}", *LABELS[1:]], [_IMG, "b", "c", "d"])
_report_case("report_caption_comment_script", LABELS, ["<!--<script>", "b", "c", "d"])
_report_case("report_caption_closes_script", LABELS, [f"</script><script>{XSS}()</script>", "b", "c", "d"])
_report_case("report_caption_closes_script_upper", LABELS, [f"</SCRIPT ><img src=x onerror={XSS}>", "b", "c", "d"])
_report_case("report_label_script_tag", [f"<script>{XSS}()</script>", *LABELS[1:]], ["a", "b", "c", "d"])
_report_case("report_label_img_onerror", [f"<img src=x onerror={XSS}>", *LABELS[1:]], ["a", "b", "c", "d"])
_report_case("report_label_names_title_placeholder", ["{{title}}", "{{scores}}", "{{figures}}", "{{wrong}}"],
             [_IMG, "b", "c", "d"])
_report_case("report_caption_names_placeholders", LABELS, ["{{gallery_json}}", "{{figures}}", "{{title}}", _IMG])
_report_case("report_id_markup", LABELS, ["a", "b", "c", "d"], ids=[f"<img src=x onerror={XSS}>", "2", "3", "4"])
_report_case("report_run_name_markup", LABELS, ["a", "b", "c", "d"], run_name=f"</title><script>{XSS}()</script>")
_report_case("report_caption_line_separators", LABELS, ["a\u2028b\u2029c", "<\\/script>", "&lt;b&gt;", "'\"`"],
             item="")
_report_case("report_label_mathtext_invalid", ["$\\foo$", *LABELS[1:]], ["a", "b", "c", "d"], item="16")
_report_case("report_label_mathtext_valid", ["$x^2$", "50%", "a_b", "{x}"], ["a", "b", "c", "d"], item="16")
_report_case("report_label_dollar_unbalanced", ["$", "$$", "\\", "^"], ["a", "b", "c", "d"], item="16")
_report_case("report_caption_lone_surrogate", LABELS, ["\ud800 broken", "b", "c", "d"], item="")


@case("report_gallery_negative", "report", error("--gallery|gallery"), item="smaller")
def _gallery_negative(ctx: Ctx) -> Proc:
    return ctx.mmtune("report", report_run(ctx, LABELS, ["a", "b", "c", "d"]), "--gallery", "-5")


@case("report_gallery_zero", "report", succeeds(lambda ctx, proc: None if (ctx.tmp / "run" / "report.html").exists()
                                                else ("wrong", "no report written")))
def _gallery_zero(ctx: Ctx) -> Proc:
    return ctx.mmtune("report", report_run(ctx, LABELS, ["a", "b", "c", "d"]), "--gallery", "0")


@case("report_truncated_metrics_jsonl", "report", error("metrics.jsonl", success=lambda ctx, proc: None if (
    ctx.tmp / "run" / "report.html").exists() else ("wrong", "no report written")))
def _report_metrics(ctx: Ctx) -> Proc:
    run_dir = ctx.copy_run()
    _truncate(ctx, run_dir / "metrics.jsonl")
    return ctx.mmtune("report", run_dir)


@case("report_val_predictions_nan", "report", error("val_predictions.csv"))
def _report_nan(ctx: Ctx) -> Proc:
    run_dir = ctx.copy_run()
    path = run_dir / "val_predictions.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    cells = lines[1].split(",")
    cells[2] = "nan"
    path.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n", encoding="utf-8")
    return ctx.mmtune("report", run_dir)


@case("report_cv_summary_truncated", "report", error("cv_summary.json"))
def _report_cv_summary(ctx: Ctx) -> Proc:
    folder = ctx.path("cv")
    folder.mkdir()
    shutil.copy(ctx.shared.run / "val_predictions.csv", folder / "oof.csv")
    (folder / "cv_summary.json").write_text('{"folds": [0, 1], "macro_f1": {"me')
    return ctx.mmtune("report", folder)


@case("report_cv_summary_names_missing_fold", "report", error("fold"))
def _report_cv_fold(ctx: Ctx) -> Proc:
    folder = ctx.path("cv")
    folder.mkdir()
    rows = csv_rows(ctx.shared.run / "val_predictions.csv")
    with (folder / "oof.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*rows[0], "fold"])
        writer.writeheader()
        writer.writerows({**row, "fold": "0"} for row in rows)
    (folder / "cv_summary.json").write_text(json.dumps({"folds": [7], "macro_f1": {"folds": [0.5], "mean": 0.5,
                                                                                    "std": 0.0}}))
    return ctx.mmtune("report", folder)


@case("report_empty_folder", "report", error("empty"))
def _report_empty(ctx: Ctx) -> Proc:
    ctx.path("empty").mkdir()
    return ctx.mmtune("report", ctx.tmp / "empty")


# ==============================================================================================
# submit / ensemble inputs: odd ids, mismatches, duplicate columns, NaN, sums != 1, clashing outputs


def pred_csv(ctx: Ctx, name: str, ids: Sequence[str] | None = None, labels: Sequence[str] = LABELS,
             oof: bool = True, seed: int = 0, edit: Callable[[list[list[str]]], None] | None = None,
             header: Sequence[str] | None = None) -> Path:
    """A prediction file (OOF with gold and fold when `oof`), rows editable before writing."""
    import random

    rng = random.Random(seed)
    ids = list(ids or [str(k) for k in range(1, 25)])
    rows = []
    for k, pid in enumerate(ids):
        weights = [rng.random() + (1.5 if j == k % len(labels) else 0) for j in range(len(labels))]
        probs = [w / sum(weights) for w in weights]
        row = [pid, labels[probs.index(max(probs))], *(f"{p:.6f}" for p in probs)]
        rows.append(row + ([labels[k % len(labels)], str(k % 3)] if oof else []))
    if edit:
        edit(rows)
    head = list(header or ["id", "label", *(f"p_{label}" for label in labels), *(["gold", "fold"] if oof else [])])
    return ctx.write(name, csv_text(rows, header=head))


def _ensemble(ctx: Ctx, *inputs: Path, out: str = "e.csv", extra: Sequence[object] = ()) -> Proc:
    return ctx.mmtune("ensemble", *inputs, "--out", ctx.tmp / out, *extra)


def _row_edit(row: int, column: int, value: str) -> Callable[[list[list[str]]], None]:
    def edit(rows: list[list[str]]) -> None:
        rows[row][column] = value
    return edit


def _ensemble_error(name: str, build: Callable[[Ctx], Sequence[Path]], fragment: str, extra: Sequence[object] = (),
                    success: Check | None = None) -> None:
    @case(name, "submit_ensemble", error(fragment, success=success))
    def act(ctx: Ctx) -> Proc:
        return _ensemble(ctx, *build(ctx), extra=extra)


_ensemble_error("ensemble_nan_probability", lambda ctx: [pred_csv(ctx, "a.csv", edit=_row_edit(3, 2, "nan")),
                                                         pred_csv(ctx, "b.csv", seed=1)], "a.csv:5")
_ensemble_error("ensemble_inf_probability", lambda ctx: [pred_csv(ctx, "a.csv", edit=_row_edit(3, 2, "inf")),
                                                         pred_csv(ctx, "b.csv", seed=1)], "a.csv:5")
_ensemble_error("ensemble_negative_probability", lambda ctx: [pred_csv(ctx, "a.csv", edit=_row_edit(0, 3, "-0.2")),
                                                              pred_csv(ctx, "b.csv", seed=1)], "a.csv:2")
_ensemble_error("ensemble_text_probability", lambda ctx: [pred_csv(ctx, "a.csv", edit=_row_edit(0, 3, "high")),
                                                          pred_csv(ctx, "b.csv", seed=1)], "a.csv:2")
_ensemble_error("ensemble_all_zero_row", lambda ctx: [pred_csv(ctx, "a.csv", edit=lambda rows: rows[1].__setitem__(
    slice(2, 6), ["0"] * 4)), pred_csv(ctx, "b.csv", seed=1)], "a.csv:3")
_ensemble_error("ensemble_mismatched_ids", lambda ctx: [pred_csv(ctx, "a.csv"), pred_csv(
    ctx, "b.csv", ids=[str(k) for k in range(2, 26)], seed=1)], "b.csv")
_ensemble_error("ensemble_mismatched_gold", lambda ctx: [pred_csv(ctx, "a.csv"), pred_csv(
    ctx, "b.csv", seed=1, edit=_row_edit(4, 6, LABELS[3]))], "b.csv")
_ensemble_error("ensemble_mismatched_labels", lambda ctx: [pred_csv(ctx, "a.csv"), pred_csv(
    ctx, "b.csv", labels=["cat", "dog", "cow", "pig"], seed=1)], "b.csv")
_ensemble_error("ensemble_duplicate_ids", lambda ctx: [pred_csv(ctx, "a.csv", edit=_row_edit(5, 0, "1")),
                                                       pred_csv(ctx, "b.csv", seed=1)], "a.csv")
_DUPLICATED = ["id", "label", "p_image-sarcasm", "p_image-sarcasm", "p_not-sarcasm", "p_text-sarcasm", "gold", "fold"]


def _duplicated_column(ctx: Ctx, name: str, seed: int) -> Path:
    """Three labels, the first one's probability column written twice (csv.DictReader keeps the last)."""
    return pred_csv(ctx, name, labels=[LABELS[0], LABELS[2], LABELS[3]], seed=seed, header=_DUPLICATED,
                    edit=lambda rows: [row.insert(2, row[2]) for row in rows])


_ensemble_error("ensemble_duplicate_p_column", lambda ctx: [_duplicated_column(ctx, "a.csv", 0),
                                                            _duplicated_column(ctx, "b.csv", 1)], "p_image-sarcasm")
_ensemble_error("ensemble_one_p_column", lambda ctx: [ctx.write("a.csv", "id,label,p_x,gold,fold\n1,x,1,x,0\n"),
                                                      pred_csv(ctx, "b.csv", seed=1)], "a.csv")
_ensemble_error("ensemble_fold_not_integer", lambda ctx: [pred_csv(ctx, "a.csv", edit=_row_edit(2, 7, "two")),
                                                          pred_csv(ctx, "b.csv", seed=1)], "a.csv:4")
_ensemble_error("ensemble_gold_unknown", lambda ctx: [pred_csv(ctx, "a.csv", edit=_row_edit(2, 6, "cat")),
                                                      pred_csv(ctx, "b.csv", seed=1, edit=_row_edit(2, 6, "cat"))],
                "cat")
_ensemble_error("ensemble_header_only", lambda ctx: [ctx.write("a.csv", "id,label,p_a,p_b,gold,fold\n"),
                                                     pred_csv(ctx, "b.csv", seed=1)], "a.csv")
_ensemble_error("ensemble_not_utf8", lambda ctx: [ctx.write("a.csv", b"id,label,p_a,p_b\n\xff\xfe,a,1,0\n"),
                                                  pred_csv(ctx, "b.csv", seed=1)], "a.csv")
_ensemble_error("ensemble_input_missing", lambda ctx: [ctx.tmp / "nope.csv", pred_csv(ctx, "b.csv", seed=1)],
                "nope.csv")
_ensemble_error("ensemble_input_is_directory", lambda ctx: [ctx.path("dir.csv"), pred_csv(ctx, "b.csv", seed=1)],
                "dir.csv")
_ensemble_error("ensemble_unknown_method", lambda ctx: [pred_csv(ctx, "a.csv"), pred_csv(ctx, "b.csv", seed=1)],
                "banana", extra=["--method", "banana"])
_ensemble_error("ensemble_no_gold_for_stack", lambda ctx: [pred_csv(ctx, "a.csv", oof=False), pred_csv(
    ctx, "b.csv", seed=1, oof=False)], "gold", extra=["--method", "stack"])
_ensemble_error("ensemble_test_count_mismatch", lambda ctx: [pred_csv(ctx, "a.csv"), pred_csv(ctx, "b.csv", seed=1)],
                "--test", extra=["--test", "t.csv"])
_ensemble_error("ensemble_unterminated_quote", lambda ctx: [ctx.write("a.csv", pred_csv(ctx, "x.csv").read_text(
    ).replace("\n3,", '\n"3,', 1)), pred_csv(ctx, "b.csv", seed=1)], "a.csv")


@case("ensemble_probabilities_not_summing_to_1", "submit_ensemble", error("a.csv", success=lambda ctx, proc: None if (
    ctx.tmp / "e.csv").exists() else ("wrong", "exit 0 without e.csv")))
def _ensemble_sums(ctx: Ctx) -> Proc:
    def scale(rows: list[list[str]]) -> None:
        for row in rows:
            row[2:6] = [f"{float(v) * 3:.6f}" for v in row[2:6]]
    return _ensemble(ctx, pred_csv(ctx, "a.csv", edit=scale), pred_csv(ctx, "b.csv", seed=1))


@case("ensemble_odd_unicode_ids", "submit_ensemble", succeeds(lambda ctx, proc: None if len(csv_rows(
    ctx.tmp / "e.csv")) == 24 else ("silent_loss", "rows lost")))
def _ensemble_ids(ctx: Ctx) -> Proc:
    ids = ["²", "١٢", "½", "007", "7", " 8", "Ⅻ", "𝟗", *[str(k) for k in range(100, 116)]]
    return _ensemble(ctx, pred_csv(ctx, "a.csv", ids=ids), pred_csv(ctx, "b.csv", ids=ids, seed=1))


@case("ensemble_label_map_python_tag", "submit_ensemble", error("map.yaml"))
def _ensemble_map_tag(ctx: Ctx) -> Proc:
    mapping = ctx.write("map.yaml", f'sarcasm: !!python/object/apply:os.system ["touch {ctx.marker}"]\n')
    return _ensemble(ctx, pred_csv(ctx, "a.csv"), pred_csv(ctx, "b.csv", seed=1), extra=["--label-map", mapping])


@case("ensemble_label_map_not_mapping", "submit_ensemble", error("map.yaml"))
def _ensemble_map_list(ctx: Ctx) -> Proc:
    mapping = ctx.write("map.yaml", "- a\n- b\n")
    return _ensemble(ctx, pred_csv(ctx, "a.csv"), pred_csv(ctx, "b.csv", seed=1), extra=["--label-map", mapping])


@case("ensemble_rules_invalid_yaml", "submit_ensemble", error("rules.yaml"))
def _ensemble_rules(ctx: Ctx) -> Proc:
    rules = ctx.write("rules.yaml", "rules: [ {label: x, when: any\n")
    return _ensemble(ctx, pred_csv(ctx, "a.csv"), pred_csv(ctx, "b.csv", seed=1),
                     extra=["--method", "rules", "--rules", rules])


@case("ensemble_rules_unknown_label", "submit_ensemble", error("rules.yaml|cat"))
def _ensemble_rules_label(ctx: Ctx) -> Proc:
    rules = ctx.write("rules.yaml", "base: mean\nrules:\n  - {label: cat, when: any, min_prob: 0.5}\n")
    return _ensemble(ctx, pred_csv(ctx, "a.csv"), pred_csv(ctx, "b.csv", seed=1),
                     extra=["--method", "rules", "--rules", rules])


def _ensemble_over_input(ctx: Ctx) -> tuple[Path, Proc]:
    a = _keep(ctx, pred_csv(ctx, "a.csv"))
    return a, _ensemble(ctx, a, pred_csv(ctx, "b.csv", seed=1), out="a.csv")


def _ensemble_over_oof_input(ctx: Ctx) -> tuple[Path, Proc]:
    a = _keep(ctx, pred_csv(ctx, "e.oof.csv"))
    return a, _ensemble(ctx, a, pred_csv(ctx, "b.csv", seed=1), out="e.csv")


def _ensemble_over_test_input(ctx: Ctx) -> tuple[Path, Proc]:
    test = _keep(ctx, pred_csv(ctx, "ta.csv", oof=False))
    return test, _ensemble(ctx, pred_csv(ctx, "a.csv"), pred_csv(ctx, "b.csv", seed=1), out="ta.csv",
                           extra=["--test", test, pred_csv(ctx, "tb.csv", oof=False, seed=1)])


def _submit_over_input(ctx: Ctx) -> tuple[Path, Proc]:
    predictions = _keep(ctx, pred_csv(ctx, "p.csv", oof=False))
    return predictions, ctx.mmtune("submit", predictions, "--format", "csv", "--out", predictions)


_clash_case("ensemble_out_equals_input", _ensemble_over_input, "a.csv", family="submit_ensemble")
_clash_case("ensemble_oof_out_equals_input", _ensemble_over_oof_input, "e.oof.csv", family="submit_ensemble",
            success=lambda ctx, proc: None)  # exit 0 is fine when nothing was written over the input
_clash_case("ensemble_out_equals_test_input", _ensemble_over_test_input, "ta.csv", family="submit_ensemble")
_clash_case("submit_out_equals_input", _submit_over_input, "p.csv", family="submit_ensemble")


@case("ensemble_out_json_summary_clash", "submit_ensemble", error("e.json", success=lambda ctx, proc: None if (
    ctx.tmp / "e.json").read_text(encoding="utf-8").startswith("id,") else (
    "silent_loss", "the predictions in e.json were overwritten by the summary")), item="19")
def _ensemble_json(ctx: Ctx) -> Proc:
    return _ensemble(ctx, pred_csv(ctx, "a.csv"), pred_csv(ctx, "b.csv", seed=1), out="e.json")


@case("ensemble_out_is_directory", "submit_ensemble", error("out"), item="12")
def _ensemble_out_dir(ctx: Ctx) -> Proc:
    ctx.path("e.csv").mkdir()
    return _ensemble(ctx, pred_csv(ctx, "a.csv"), pred_csv(ctx, "b.csv", seed=1))


def _submitted(n: int) -> Check:
    def check(ctx: Ctx, proc: Proc) -> tuple[str, str] | None:
        with zipfile.ZipFile(ctx.tmp / "r.zip") as archive:
            results = json.loads(archive.read("results.json"))["results"]
        return None if len(results) == n else ("silent_loss", f"{len(results)} of {n} predictions submitted")
    return check


def _submit(ctx: Ctx, predictions: Path, *extra: object) -> Proc:
    return ctx.mmtune("submit", predictions, "--out", ctx.tmp / "r.zip", *extra)


@case("submit_superscript_id", "submit_ensemble", error("²", success=_submitted(24)), item="15")
def _submit_superscript(ctx: Ctx) -> Proc:
    return _submit(ctx, pred_csv(ctx, "p.csv", oof=False, edit=_row_edit(3, 0, "²")))


@case("submit_odd_digit_ids", "submit_ensemble", error("p.csv", success=_submitted(24)), item="15")
def _submit_digits(ctx: Ctx) -> Proc:
    def odd(rows: list[list[str]]) -> None:
        for row, value in zip(rows, ["١٢", "½", "Ⅻ", "𝟗", "⑤", "007", "7 "]):
            row[0] = value
    return _submit(ctx, pred_csv(ctx, "p.csv", oof=False, edit=odd))


@case("submit_unterminated_quote", "submit_ensemble", error("p.csv", success=_submitted(24)), item="18")
def _submit_quote(ctx: Ctx) -> Proc:
    text = pred_csv(ctx, "x.csv", oof=False).read_text().replace("\n5,", '\n"5,', 1)
    return _submit(ctx, ctx.write("p.csv", text))


def _submit_error(name: str, build: Callable[[Ctx], Path], fragment: str, *extra: object, item: str = "") -> None:
    @case(name, "submit_ensemble", error(fragment), item)
    def act(ctx: Ctx) -> Proc:
        return _submit(ctx, build(ctx), *[e(ctx) if callable(e) else e for e in extra])


_submit_error("submit_duplicate_ids", lambda ctx: pred_csv(ctx, "p.csv", oof=False, edit=_row_edit(4, 0, "1")), "p.csv")
_submit_error("submit_unknown_label", lambda ctx: pred_csv(ctx, "p.csv", oof=False, edit=_row_edit(4, 1, "cat")),
              "cat")
_submit_error("submit_no_label_column", lambda ctx: ctx.write("p.csv", "id,p_a\n1,0.5\n"), "p.csv")
_submit_error("submit_empty_file", lambda ctx: ctx.write("p.csv", ""), "p.csv")
_submit_error("submit_header_only", lambda ctx: ctx.write("p.csv", "id,label\n"), "p.csv")
_submit_error("submit_not_utf8", lambda ctx: ctx.write("p.csv", b"id,label\n1,caf\xe9\n"), "p.csv")
_submit_error("submit_nul_byte", lambda ctx: ctx.write("p.csv", "id,label\n1,not-sarcasm\x00\n"), "p.csv")
_submit_error("submit_predictions_directory", lambda ctx: ctx.path("p.csv") if ctx.path("p.csv").mkdir() is None
              else None, "p.csv")
_submit_error("submit_empty_id", lambda ctx: pred_csv(ctx, "p.csv", oof=False, edit=_row_edit(2, 0, "")), "p.csv:4")
_submit_error("submit_ids_missing_posts", lambda ctx: pred_csv(ctx, "p.csv", oof=False), "ids.json", "--ids",
              lambda ctx: ctx.write("ids.json", dump({str(k): {"image": "a.jpg", "caption": "x"}
                                                       for k in range(1, 30)})))
_submit_error("submit_ids_file_nested_100k", lambda ctx: pred_csv(ctx, "p.csv", oof=False), "ids.json", "--ids",
              lambda ctx: ctx.write("ids.json", deep(100_000)), item="7")
_submit_error("submit_out_is_directory", lambda ctx: (ctx.path("r.zip").mkdir(), pred_csv(ctx, "p.csv", oof=False))[1],
              "r.zip", item="12")
_submit_error("submit_bad_phase_label_whitespace", lambda ctx: pred_csv(ctx, "p.csv", oof=False, edit=_row_edit(
    1, 1, " not-sarcasm")), "p.csv")


# ==============================================================================================
# Classification and the command line


@dataclass
class Verdict:
    case: Case
    status: str
    reason: str
    seconds: float
    log_lines_before_error: int = 0


def traceback_line(proc: Proc) -> str:
    """The exception line that ends the (last) traceback."""
    lines = proc.output.split("\n")
    start = max(k for k, line in enumerate(lines) if "Traceback (most recent call last)" in line)
    tail = [line for line in lines[start:] if line and not line.startswith((" ", "\t", "Traceback"))]
    return (tail[0] if tail else lines[start]).strip()[:160]


def _names(line: str, fragments: Sequence[str]) -> str | None:
    lowered = line.lower()
    for fragment in fragments:
        if not any(option.lower() in lowered for option in fragment.split("|")):
            return fragment
    return None


def classify(case: Case, ctx: Ctx, proc: Proc) -> tuple[str, str, int]:
    """(status, reason, log lines before the error line) of the case's main process."""
    if proc.timed_out:
        return "hang", f"`mmtune {' '.join(proc.args[:1])}` ran past {proc.seconds:.0f} s", 0
    if ctx.marker.exists():
        return "security", "the payload ran (marker file created)", 0
    if "Traceback (most recent call last)" in proc.output:
        return "traceback", traceback_line(proc), 0
    expect, last = case.expect, proc.last_line()
    if proc.returncode == 2:
        lines = [line for line in proc.stderr.split("\n") if line.strip()]
        if expect.error is None:
            return "wrong", f"exit 2, expected success: {last[:150]}", 0
        if not last.startswith("mmtune: error: "):
            errors = [line for line in lines if "mmtune: error:" in line]
            where = f"error line not last (last: {last[:80]!r})" if errors else "exit 2 without an error line"
            return "wrong", where, 0
        if proc.stderr.count("mmtune: error:") != 1:
            return "wrong", "several error lines", 0
        missing = _names(last, expect.error)
        if missing:
            return "wrong", f"error line does not name {missing!r}: {last[:150]}", 0
        if INTERNAL_NAME.search(last):
            return "wrong", f"error line names an internal type: {last[:150]}", 0
        return "ok", "", len(lines) - 1
    if proc.returncode == 0:
        if expect.success is None:
            return "wrong", f"exit 0, expected exit 2 naming {' and '.join(expect.error or ())}", 0
        try:
            found = expect.success(ctx, proc)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            found = ("wrong", f"exit 0 but its outputs are missing or unreadable ({type(exc).__name__}: {exc})")
        return (*found, 0) if found else ("ok", "", 0)
    return "wrong", f"exit {proc.returncode}: {last[:150]}", 0


def run_case(case: Case, shared: Shared, root: Path) -> Verdict:
    tmp = Path(tempfile.mkdtemp(prefix=case.name[:40].replace("=", "_").replace(".", "_") + "-", dir=root))
    ctx, started = Ctx(shared, tmp), time.monotonic()
    try:
        proc = case.act(ctx)
        status, reason, before = classify(case, ctx, proc)
    except Finding as finding:
        status, reason, before = finding.status, finding.reason, 0
        if ctx.marker.exists():
            status, reason = "security", "the payload ran (marker file created)"
    except Exception as exc:  # why: a broken case must show up in the table, not stop the measurement
        status, reason, before = "wrong", f"[harness] {type(exc).__name__}: {exc}", 0
    verdict = Verdict(case, status, reason, time.monotonic() - started, before)
    shutil.rmtree(tmp, ignore_errors=True)
    return verdict


def summary_line(verdicts: Sequence[Verdict]) -> str:
    counts = Counter(v.status for v in verdicts)
    return (f"cases {len(verdicts)}, exit-2-or-named-fault {counts['ok']}, tracebacks {counts['traceback']}, "
            f"silent losses {counts['silent_loss']}, hangs {counts['hang']}, security {counts['security']}, "
            f"other {counts['wrong']}")


def select(only: str | None) -> list[Case]:
    return [c for c in CASES if not only or only in c.name or only == c.family]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="run the cases whose name contains SUBSTRING (or whose family is it)")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--show-noisy", action="store_true", help="name the exit-2 cases that log before the error")
    args = parser.parse_args(argv)
    cases = select(args.only)
    if args.list:
        for c in cases:
            print(f"{c.family:16} {c.item or '-':8} {c.name}")
        print(f"{len(cases)} cases")
        return 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mmtune-hostile-") as folder:
        root = Path(folder)
        shared = build_shared(root / "shared")
        print(f"shared fixtures built in {time.monotonic() - started:.0f} s; running {len(cases)} cases", flush=True)
        verdicts = []
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = [pool.submit(run_case, c, shared, root) for c in cases]
            for future in as_completed(futures):
                verdicts.append(future.result())
                v = verdicts[-1]
                print(f"[{len(verdicts)}/{len(cases)}] {v.status:11} {v.seconds:5.1f} s  {v.case.name}",
                      file=sys.stderr, flush=True)
    failing = [v for v in verdicts if v.status != "ok"]
    if failing:
        print(f"{'family':16} {'item':7} {'case':46} {'status':11} reason")
    for v in sorted(failing, key=lambda v: (FAMILIES.index(v.case.family), v.case.name)):
        print(f"{v.case.family:16} {v.case.item or '-':7} {v.case.name:46} {v.status:11} {v.reason}")
    noisy = sum(1 for v in verdicts if v.log_lines_before_error)
    if args.show_noisy:
        for v in verdicts:
            if v.log_lines_before_error:
                print(f"logs {v.log_lines_before_error} line(s) before its error: {v.case.name}")
    print(summary_line(verdicts))
    print(f"({noisy} exit-2 cases print log lines before the error line; {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
