"""Runs in the default suite: the real suite names what is missing instead of failing."""

import pytest

from mmtune.testing.real import SMOLLM2, RealModel, missing_reason, real_model_folder

ABSENT = RealModel(name="Nothing-1M", package="mmtune_no_such_package", pip_name="no-such-package",
                   gguf="nothing.gguf", family="llama")


def test_a_missing_package_is_named_with_how_to_install_it(tmp_path):
    reason = missing_reason(ABSENT)
    assert reason and "pip install 'mmtune[real]'" in reason
    assert ("no-such-package" in reason) or ("gguf" in reason)
    with pytest.raises(FileNotFoundError, match="mmtune\\[real\\]"):
        real_model_folder(ABSENT, cache=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-built left behind


def test_each_real_model_belongs_to_a_registered_family():
    from mmtune.models.vlm_families import family_names

    assert SMOLLM2.family in family_names()
