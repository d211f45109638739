import pytest

from mmtune.config import Config, build, describe_schema, load_config, save_config
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
