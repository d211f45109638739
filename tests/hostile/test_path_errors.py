"""Paths the system refuses (too long, under a file, a loop of links) are one exit-2 line naming the path."""

import pytest

from tests.hostile.conftest import assert_one_line_error, run_mmtune

LONG = "x" * 5000


@pytest.mark.parametrize("args", [
    ("ensemble", LONG, "--out", "e.csv"),
    ("submit", LONG, "--out", "r.zip"),
    ("train", LONG),
])
def test_a_name_too_long_is_one_line(tmp_path, args):
    result = run_mmtune(*args, cwd=tmp_path)
    assert_one_line_error(result, "x" * 100)


def test_a_path_under_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("", encoding="utf-8")
    result = run_mmtune("ensemble", str(tmp_path / "file" / "oof.csv"), "--out", "e.csv", cwd=tmp_path)
    assert_one_line_error(result, "file")


def test_a_loop_of_links_is_one_line(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    result = run_mmtune("ensemble", str(tmp_path / "a" / "oof.csv"), "--out", "e.csv", cwd=tmp_path)
    assert_one_line_error(result, str(tmp_path / "a"))
