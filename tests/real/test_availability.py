"""Runs in the default suite: the real suite names what is missing instead of failing."""

import hashlib
import importlib.util

import pytest

from mmtune.testing.real import MODELS, RealModel, missing_reason, real_model_folder, source_files, whole_gguf

ABSENT = RealModel(name="Nothing-1M", package="mmtune_no_such_package", pip_name="no-such-package",
                   gguf="nothing.gguf", family="llama")


def test_a_missing_package_is_named_with_how_to_install_it(tmp_path):
    reason = missing_reason(ABSENT)
    assert reason and "pip install 'mmtune[real]'" in reason
    assert ("no-such-package" in reason) or ("gguf" in reason)
    with pytest.raises(FileNotFoundError, match="mmtune\\[real\\]"):
        real_model_folder(ABSENT, cache=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-built left behind


@pytest.mark.parametrize("model", list(MODELS.values()), ids=list(MODELS))
def test_each_real_model_belongs_to_a_family(model):
    from mmtune.models.vlm_families import TEXT_LM, family_names

    assert model.family in [*family_names(), TEXT_LM.name]


def chunked(tmp_path, monkeypatch, pieces: list[bytes], sha256: str) -> RealModel:
    """Chunk packages chunky_partN/data/m.gguf.part0N on sys.path, as the gemma3 wheels install them."""
    for index, piece in enumerate(pieces):
        package = tmp_path / "site" / f"chunky_part{index + 1}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise ImportError('never imported')\n", encoding="utf-8")
        (package / "data" / f"m.gguf.part{index:02d}").write_bytes(piece)
    if importlib.util.find_spec("gguf") is None:  # only its presence is checked: the default suite has no `real` extra
        (tmp_path / "site" / "gguf").mkdir()
        (tmp_path / "site" / "gguf" / "__init__.py").write_text("raise ImportError('never imported')\n",
                                                                encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return RealModel(name="Chunky", package="chunky", pip_name="chunky", gguf="m.gguf", family="causal-lm",
                     parts=tuple(f"chunky_part{i + 1}" for i in range(len(pieces))), sha256=sha256)


def test_chunks_are_found_without_importing_and_joined_once_in_order(tmp_path, monkeypatch):
    pieces = [b"GGUF" + bytes(range(7)), b"middle", b"end"]
    model = chunked(tmp_path, monkeypatch, pieces, hashlib.sha256(b"".join(pieces)).hexdigest())
    files = source_files(model)
    assert [path.name for path in files] == ["m.gguf.part00", "m.gguf.part01", "m.gguf.part02"]
    joined = whole_gguf(model, files, tmp_path / "cache")
    assert joined.read_bytes() == b"".join(pieces)
    joined.write_bytes(b"kept")  # a second call reuses the joined file
    assert whole_gguf(model, files, tmp_path / "cache").read_bytes() == b"kept"


def test_chunks_that_do_not_match_the_published_checksum_leave_nothing(tmp_path, monkeypatch):
    model = chunked(tmp_path, monkeypatch, [b"a", b"b"], hashlib.sha256(b"ba").hexdigest())
    with pytest.raises(ValueError, match="do not match the published SHA-256"):
        whole_gguf(model, source_files(model), tmp_path / "cache")
    assert not [path for path in (tmp_path / "cache").rglob("*") if path.is_file()]
    (tmp_path / "site" / "chunky_part2" / "data" / "m.gguf.part01").unlink()
    assert source_files(model) is None and "chunky is not installed" in missing_reason(model)
