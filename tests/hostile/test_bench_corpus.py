"""benchmarks/hostile.py: the corpus is wide enough, and its classifier reads outcomes as the README promises."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "hostile.py"


def _load():
    spec = importlib.util.spec_from_file_location("hostile_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


hostile = _load()


def test_corpus_is_wide_and_names_are_unique():
    names = [case.name for case in hostile.CASES]
    assert len(names) >= 150
    assert len(names) == len(set(names))
    assert {case.family for case in hostile.CASES} == set(hostile.FAMILIES)
    for family in hostile.FAMILIES:
        assert sum(case.family == family for case in hostile.CASES) >= 5, family


def test_every_numbered_issue_item_has_a_case():
    items = {case.item for case in hostile.CASES}
    assert {str(k) for k in range(1, 23)} <= items
    assert "smaller" in items


def test_only_selects_by_name_or_family():
    assert all(case.family == "kill" for case in hostile.select("kill"))
    assert [case.name for case in hostile.select("json_nested_100k_deep")] == ["json_nested_100k_deep"]


def _proc(code, stderr="", stdout="", timed_out=False, seconds=1.0):
    return hostile.Proc(["train"], code, stdout, stderr, seconds, timed_out)


def _case(expect):
    return hostile.Case("c", "data", "", lambda ctx: None, expect)


@pytest.fixture
def ctx(tmp_path):
    return hostile.Ctx(shared=None, tmp=tmp_path)


def test_one_error_line_naming_the_key_is_ok(ctx):
    expect = hostile.error("train.lr|lr")
    proc = _proc(2, "INFO loading\nmmtune: error: train.lr: -1 < 0\n")
    status, _, before = hostile.classify(_case(expect), ctx, proc)
    assert (status, before) == ("ok", 1)


@pytest.mark.parametrize(("proc", "status", "reason"), [
    (_proc(None, timed_out=True), "hang", "ran past"),
    (_proc(1, "Traceback (most recent call last):\n  File x\nValueError: boom\n"), "traceback", "ValueError: boom"),
    (_proc(2, "mmtune: error: bad\nINFO later\n"), "wrong", "not last"),
    (_proc(2, "mmtune: error: x.json: got _PairsDict\n"), "wrong", "does not name"),
    (_proc(2, "mmtune: error: train.lr: got _PairsDict\n"), "wrong", "internal type"),
    (_proc(2, "oops\n"), "wrong", "without an error line"),
    (_proc(0, "done\n"), "wrong", "exit 0, expected exit 2"),
    (_proc(137, "Killed\n"), "wrong", "exit 137"),
])
def test_broken_promises_are_classified(ctx, proc, status, reason):
    got, why, _ = hostile.classify(_case(hostile.error("train.lr")), ctx, proc)
    assert got == status and reason in why, (got, why)


def test_a_payload_marker_is_security_even_with_exit_2(ctx):
    ctx.marker.write_text("")
    got, _, _ = hostile.classify(_case(hostile.error("x")), ctx, _proc(2, "mmtune: error: x\n"))
    assert got == "security"


def test_success_checks_decide_exit_0(ctx):
    lost = hostile.succeeds(lambda ctx, proc: ("silent_loss", "2 rows gone"))
    assert hostile.classify(_case(lost), ctx, _proc(0))[:2] == ("silent_loss", "2 rows gone")
    assert hostile.classify(_case(hostile.succeeds()), ctx, _proc(0))[0] == "ok"


def test_summary_line_counts_every_status():
    verdicts = [hostile.Verdict(_case(hostile.succeeds()), status, "", 0.0) for status in hostile.STATUSES]
    assert hostile.summary_line(verdicts) == ("cases 6, exit-2-or-named-fault 1, tracebacks 1, silent losses 1, "
                                              "hangs 1, security 1, other 1")


@pytest.mark.slow
def test_a_sample_runs_through_the_real_cli(tmp_path):
    """Cases whose promise mmtune already keeps come out ok; the others come out as one of the statuses."""
    shared = hostile.build_shared(tmp_path / "shared", with_runs=False)
    kept = ["json_bom_accepted", "csv_missing_column", "img_symlink_inside_ok", "jsonl_bad_line_middle"]
    sample = kept + ["json_nested_100k_deep", "img_symlink_absolute_outside"]
    verdicts = {name: hostile.run_case(next(c for c in hostile.CASES if c.name == name), shared, tmp_path)
                for name in sample}
    for name in kept:
        assert verdicts[name].status == "ok", (name, verdicts[name].reason)
    assert all(v.status in hostile.STATUSES for v in verdicts.values())
    assert verdicts["json_nested_100k_deep"].status in ("ok", "traceback")
    assert verdicts["img_symlink_absolute_outside"].status in ("ok", "security")
