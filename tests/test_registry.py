"""Registries that are a package's modules: entries listed without importing, unknown names name the key."""

import pytest

import mmtune.models.fusions as fusions
from mmtune.errors import InputError
from mmtune.registry import entry_module, entry_names


def test_entries_are_the_public_modules():
    assert "concat" in entry_names(fusions.__path__)
    assert not any(name.startswith("_") for name in entry_names(fusions.__path__))


def test_an_entry_is_imported_by_name():
    assert entry_module(fusions.__name__, fusions.__path__, "gated", "model.fusion", "fusion").__name__ == (
        "mmtune.models.fusions.gated")


def test_an_unknown_entry_names_the_key_and_the_known_ones():
    with pytest.raises(InputError, match=r"^model\.fusion: unknown fusion 'no_such' \(known: .*concat"):
        entry_module(fusions.__name__, fusions.__path__, "no_such", "model.fusion", "fusion")
