"""The kind registry: kinds found by module, each reading its own `model.<section>` and refusing the others'."""

import pytest

from mmtune.config import Config, ModelConfig, ViltConfig, load_config
from mmtune.errors import InputError
from mmtune.models import kinds
from mmtune.models.kinds import Kind, build_classifier, check_kind, known_kinds, register_kind
from tests.hostile.conftest import assert_one_line_error, run_mmtune

# One key of each section, set away from its default.
SECTION_KEYS = {"fusion": "model.fusion.projection_dim=8", "vilt": "model.vilt.dropout=0.3",
                "vlm": "model.vlm.hidden_size=8"}


def _section(kind: str) -> str | None:
    return check_kind(Config(model=ModelConfig(kind=kind))).section


def test_every_kind_module_registers_its_kind_and_section():
    assert {name: _section(name) for name in known_kinds()} == {
        "fusion": "fusion", "vilt": "vilt", "vlm-generative": "vlm", "vlm-head": "vlm"}


@pytest.mark.parametrize("kind", ["fusion", "vilt", "vlm-generative", "vlm-head"])
@pytest.mark.parametrize("section", sorted(SECTION_KEYS))
def test_a_kind_reads_its_own_section_and_refuses_the_others(kind, section):
    cfg = load_config(None, [f"model.kind={kind}", SECTION_KEYS[section]])
    key = SECTION_KEYS[section].partition("=")[0]
    if section == _section(kind):
        assert check_kind(cfg).name == kind
        return
    owners = "kind fusion" if section == "fusion" else "kind vilt" if section == "vilt" else \
        "kinds vlm-generative, vlm-head"
    with pytest.raises(InputError, match=rf"^{key}: belongs to {owners}, but model.kind is {kind}$"):
        check_kind(cfg)


def test_a_section_of_another_kind_at_its_defaults_is_not_required_nor_refused():
    cfg = load_config(None, ["model.kind=vilt", "model.vilt.max_length=40"])
    assert cfg.model.fusion == type(cfg.model.fusion)() and check_kind(cfg).name == "vilt"


def test_a_run_folder_s_config_builds_though_another_kind_s_defaults_changed_since(monkeypatch):
    # config.yaml holds every section as it was: the check is the run's pre-flight, not the builder's.
    known_kinds()
    monkeypatch.setattr(kinds, "_KINDS", dict(kinds._KINDS))
    register_kind(Kind("probe", section=None, build=lambda cfg, labels, size: (cfg.model.kind, labels, size)))
    saved = Config(model=ModelConfig(kind="probe", vilt=ViltConfig(dropout=0.3)))
    assert build_classifier(saved, ["a", "b"], 2) == ("probe", ["a", "b"], 2)
    with pytest.raises(InputError, match="model.vilt.dropout: belongs to kind vilt, but model.kind is probe"):
        check_kind(saved)


@pytest.mark.parametrize("command", ["train", "cv"])
def test_a_vilt_run_with_a_fusion_key_is_refused_before_any_work(tmp_path, command):
    run_dir = tmp_path / "run"
    config = tmp_path / "vilt.yaml"
    config.write_text(f"output_dir: {run_dir}\nmodel:\n  kind: vilt\n  name: dandelin/vilt-b32-mlm\n", encoding="utf-8")
    result = run_mmtune(command, config, "model.fusion.text_encoder=bert-base", cwd=tmp_path)
    assert_one_line_error(result, "model.fusion.text_encoder: belongs to kind fusion, but model.kind is vilt")
    assert not run_dir.exists()


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(InputError, match=r"model.kind: unknown kind 'clip' \(known: fusion, vilt, vlm-generative"):
        check_kind(load_config(None, ["model.kind=clip"]))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.loss=bits"], r"train.loss: bits needs a 2-output head"),
        (["model.freeze.head_only_epochs=1"], r"model.freeze.head_only_epochs: must be 0 for vlm-generative"),
    ],
)
def test_vlm_generative_checks_its_settings(overrides, message):
    with pytest.raises(InputError, match=message):
        check_kind(load_config(None, ["model.kind=vlm-generative", *overrides]))
    assert check_kind(load_config(None, ["model.kind=vlm-head", *overrides])).name == "vlm-head"


def test_a_kind_is_registered_once_and_names_a_section_of_the_config(monkeypatch):
    known_kinds()
    monkeypatch.setattr(kinds, "_KINDS", dict(kinds._KINDS))
    with pytest.raises(ValueError, match="registered twice"):
        register_kind(Kind("fusion", section="fusion", build=lambda cfg, labels, size: None))
    with pytest.raises(ValueError, match="model.clip is not a section"):
        register_kind(Kind("clip", section="clip", build=lambda cfg, labels, size: None))


@pytest.mark.parametrize(("override", "message"), [
    ("model.fusion.method=sum", r"model.fusion.method: unknown fusion 'sum' \(known: concat, cross_attention"),
    ("model.freeze.preset=half", r"model.freeze.preset: unknown preset 'half' \(known: all, attention"),
])
def test_registry_names_are_checked_by_their_registry(override, message):
    # The names are the registries' modules (models/fusions/, models/freeze_presets/), not a list in config.py.
    with pytest.raises(InputError, match=message):
        check_kind(load_config(None, [override]))
