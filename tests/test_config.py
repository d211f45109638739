import re

import pytest

from mmtune.config import (
    Config,
    LoraConfig,
    ModelConfig,
    build,
    describe_schema,
    load_config,
    load_saved_config,
    save_config,
)
from mmtune.errors import InputError


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_then_yaml_then_overrides(tmp_path):
    path = write(tmp_path, "name: exp\ndata:\n  train: t.json\n  text:\n    emoji: drop\n")
    cfg = load_config(path, ["data.text.emoji=words", "seed=7", "data.labels=[a, b]", "cv.only=[0,2]"])
    assert cfg.name == "exp" and cfg.seed == 7
    assert cfg.data.train == "t.json" and cfg.data.text.emoji == "words"
    assert cfg.data.labels == ["a", "b"] and cfg.cv.only == [0, 2]
    assert cfg.data.text.nfc is True


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("data:\n  trian: x\n", [], r"unknown key 'data\.trian' \(did you mean 'data\.train'\?\)"),
        ("", ["data.text.emojii=drop"], r"unknown key 'data\.text\.emojii'"),
        ("", ["bogus.key=1"], r"unknown key 'bogus'"),
        ("", ["seed=abc"], r"'seed' must be a whole number, got text 'abc'$"),
        ("", ["data.text.emoji=smile"], r"'data\.text\.emoji' must be one of 'keep', 'drop', 'words'"),
        ("", ["data.on_bad_row=ignore"], r"'data\.on_bad_row' must be one of 'skip', 'error'"),
        ("", ["data.image.scale=1"], r"unknown key 'data\.image\.scale'"),
        ("", ["data.image.augment.scale=[1]"], r"'data\.image\.augment\.scale' must be a list of 2 values"),
        ("", ["data.text.nfc=maybe"], r"'data\.text\.nfc' must be true or false, got text 'maybe'$"),
        ("data: 3\n", [], r"'data' must be a mapping"),
        ("- a\n- b\n", [], r"a config must be a mapping"),
        ("data: [\n", [], r"invalid YAML"),
        ("", ["no_equals_sign"], r"expected section\.key=value"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, text, overrides, message):
    with pytest.raises(InputError, match=message):
        load_config(write(tmp_path, text), overrides)


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_saved_config_loads_back_equal(tmp_path):
    cfg = load_config(None, ["data.image.augment.scale=[0.8, 1.2]", "data.columns.extra_text=[ocr]"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_every_leaf_key_is_documented():
    rows = describe_schema()
    assert len(rows) > 40
    assert all(doc for _, _, doc in rows), [key for key, _, doc in rows if not doc]
    assert build(Config, {}) == Config()


# ----------------------------------------------------------------------------------------------
# Each kind's keys live in its section of `model`; keys of older configs that moved say where to


@pytest.mark.parametrize(
    ("override", "new"),
    [
        ("model.text_encoder=x", "model.fusion.text_encoder"),
        ("model.image_encoder=x", "model.fusion.image_encoder"),
        ("model.fusion=gated", "model.fusion.method"),
        ("model.projection_dim=64", "model.fusion.projection_dim"),
        ("model.post_features=true", "model.fusion.post_features"),
        ("model.text_pooling=mean", "model.fusion.text_pooling"),
        ("model.lora.towers=[text]", "model.fusion.lora_towers"),
        ("model.hidden_size=64", "model.fusion.hidden_size or model.vlm.hidden_size"),
        ("model.dropout=0.2", "model.fusion.dropout, model.vilt.dropout or model.vlm.dropout"),
        ("model.max_length=40", "model.fusion.max_length or model.vilt.max_length"),
    ],
)
def test_a_key_that_moved_names_its_new_place(override, new):
    old = override.partition("=")[0]
    given = f"{old}: gated" if old == "model.fusion" else old
    with pytest.raises(InputError, match=f"^defaults: '{re.escape(given)}' moved to {re.escape(new)}"):
        load_config(None, [override])


def test_the_old_fusion_key_in_a_file_names_the_method(tmp_path):
    with pytest.raises(InputError, match=r"c\.yaml: 'model\.fusion: gated' moved to model\.fusion\.method$"):
        load_config(write(tmp_path, "model:\n  kind: fusion\n  fusion: gated\n"))


def test_every_moved_key_points_at_a_key_of_the_schema():
    keys = {key for key, _, _ in describe_schema()}
    targets = [target for cls in (ModelConfig, LoraConfig) for text in cls.MOVED.values()
               for target in re.findall(r"model\.[a-z_.]+[a-z_]", text)]
    assert len(targets) >= 12 and set(targets) <= keys


def test_sections_of_kinds_not_in_use_are_not_required_and_round_trip(tmp_path):
    cfg = load_config(None, ["model.kind=vilt", "model.vilt.max_length=40", "model.vlm.prompt=en"])
    assert cfg.model.fusion.method == "concat" and cfg.model.vilt.max_length == 40
    save_config(cfg, tmp_path / "config.yaml")
    assert load_saved_config(tmp_path / "config.yaml") == cfg


def test_the_schema_lists_each_kind_s_section():
    keys = {key for key, _, _ in describe_schema()}
    assert {"model.fusion.method", "model.fusion.lora_towers", "model.vilt.dropout", "model.vlm.hidden_size"} <= keys
    assert not {"model.dropout", "model.projection_dim", "model.text_encoder", "model.lora.towers"} & keys


def test_class_weights_are_the_objectives_schemes():
    with pytest.raises(InputError, match=r"'train\.class_weights' must be one of 'none', 'inverse'"):
        load_config(None, ["train.class_weights=balanced"])
    assert load_config(None, ["train.class_weights=effective_number"]).train.class_weights == "effective_number"
