import re

import pytest
import yaml

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
    where = f"override '{override}'"  # the override names itself as the source
    with pytest.raises(InputError, match=f"^{re.escape(where)}: '{re.escape(given)}' moved to {re.escape(new)}"):
        load_config(None, [override])


def test_the_old_fusion_key_in_a_file_names_the_method(tmp_path):
    with pytest.raises(InputError, match=r"c\.yaml:3: 'model\.fusion: gated' moved to model\.fusion\.method$"):
        load_config(write(tmp_path, "model:\n  kind: fusion\n  fusion: gated\n"))


def test_every_moved_key_points_at_a_key_of_the_schema():
    keys = {key for key, _, _ in describe_schema()}
    targets = [target for cls in (ModelConfig, LoraConfig) for text in cls.MOVED.values()
               for target in re.findall(r"model\.[a-z_.]+[a-z_]", text)]
    assert len(targets) >= 12 and set(targets) <= keys


def test_sections_of_kinds_not_in_use_are_not_required_and_round_trip(tmp_path):
    cfg = load_config(None, ["model.kind=vilt", "model.vilt.max_length=40", "model.vlm.prompt=en"])
    assert cfg.model.fusion.method == "pair" and cfg.model.vilt.max_length == 40
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


# ----------------------------------------------------------------------------------------------
# Numbers as YAML 1.2 reads them, and messages that say where a bad value was set


@pytest.mark.parametrize(("written", "value"), [
    ("1e-4", 1e-4), ("1E-4", 1e-4), ("1e+3", 1000.0), ("+1.0e+3", 1000.0), (".5", 0.5), ("+.5e1", 5.0),
    ("2.", 2.0), ("3", 3.0), ("0x10", 16.0), ("0o17", 15.0), ("'1e-4'", 1e-4),
])
def test_every_yaml_1_2_float_form_is_a_number_in_a_file_and_an_override(tmp_path, written, value):
    assert load_config(write(tmp_path, f"train:\n  lr: {written}\n")).train.lr == pytest.approx(value)
    assert load_config(None, [f"train.head_lr={written}"]).train.head_lr == pytest.approx(value)
    assert isinstance(load_config(None, [f"train.head_lr={written}"]).train.head_lr, float)


@pytest.mark.parametrize(("written", "value"), [("017", 17), ("0o17", 15), ("0x1F", 31), ("+5", 5), ("1e1", 10),
                                                ("10.0", 10)])
def test_whole_numbers_in_every_form_are_whole_numbers(written, value):
    epochs = load_config(None, [f"train.epochs={written}"]).train.epochs
    assert epochs == value and type(epochs) is int


@pytest.mark.parametrize("written", ["nan", "inf", "infinity", "1_000", "1:30", "1e", "e5", "0x", "1.2.3", "١", "true",
                                     "'.'"])
def test_text_that_is_no_yaml_number_is_refused_for_a_number(written):
    with pytest.raises(InputError, match=r"'train\.lr' must be a number, got (text|true)"):
        load_config(None, [f"train.lr={written}"])


def test_a_bad_value_is_named_by_its_file_and_line_or_by_its_override(tmp_path):
    path = write(tmp_path, "name: x\n\ntrain:\n  epochs: 2\n  lr: fast\ndata:\n  labels:\n    - a\n    - 3\n")
    where = re.escape(str(path))
    with pytest.raises(InputError, match=rf"^{where}:5: 'train\.lr' must be a number, got text 'fast'$"):
        load_config(path)
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}:9: 'data\.labels\[1\]' must be text"):
        load_config(path, ["train.lr=1e-4"])
    # The override wins over the file's line, and names itself: the file holds no bad value.
    with pytest.raises(InputError, match=r"^override 'train\.lr=-1e-4': 'train\.lr' must be >= 0, got -0\.0001$"):
        load_config(path, ["data.labels=[a, b]", "train.lr=-1e-4"])
    with pytest.raises(InputError, match=r"^override 'data\.labels=\[a, 2\]': 'data\.labels\[1\]' must be text"):
        load_config(path, ["train.lr=1", "data.labels=[a, 2]"])


def test_checks_between_keys_name_where_the_key_was_set(tmp_path):
    path = write(tmp_path, "cv:\n  folds: 3\n  only: [0, 4]\n")
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}:3: 'cv\.only' fold 4 does not exist"):
        load_config(path)
    with pytest.raises(InputError, match=r"^override 'cv\.only=\[5\]': 'cv\.only' fold 5 does not exist"):
        load_config(path, ["cv.only=[5]"])
    with pytest.raises(InputError, match=r"^override 'train\.time_budget=soon': 'train\.time_budget'"):
        load_config(path, ["cv.only=[1]", "train.time_budget=soon"])


def test_a_merged_key_is_named_by_the_line_it_was_written_on(tmp_path):
    path = write(tmp_path, "chat:\n  max_length: &n 0\n  turns: all\ntrain: &t\n  lr: 1e-4\n"
                           "dpo:\n  <<: {beta: 0.5, label_smoothing: 2}\n")
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}:7: 'dpo\.label_smoothing' must be in"):
        load_config(path, ["chat.max_length=8"])
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}:2: 'chat\.max_length' must be >= 1"):
        load_config(path)


def test_text_keys_keep_numbers_as_written_and_saved_configs_read_back_equal(tmp_path):
    cfg = load_config(write(tmp_path, "name: 1e5\noutput_dir: runs/007\ndata:\n  columns:\n    id: 0o17\n"),
                      ["data.labels=['1e-4', '017', '1:30', 'yes']", "data.columns.text=1.10"])
    assert (cfg.name, cfg.data.columns.id, cfg.data.columns.text) == ("1e5", "0o17", "1.10")
    assert cfg.data.labels == ["1e-4", "017", "1:30", "yes"]
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_saved_config(tmp_path / "saved.yaml") == cfg
    assert yaml.safe_load((tmp_path / "saved.yaml").read_text())["data"]["labels"] == cfg.data.labels  # YAML 1.1 too


def test_literal_choices_are_matched_with_their_type():
    assert load_config(None, ["build.stage=2"]).build.stage == 2
    for written in ("true", "2.0", "'2'"):
        with pytest.raises(InputError, match=r"'build\.stage' must be one of 0, 1, 2"):
            load_config(None, [f"build.stage={written}"])


def test_the_schema_lists_every_choice_and_writes_defaults_as_yaml():
    docs = {key: (default, text) for key, default, text in describe_schema(names={"model.kind": ["a", "b-c"]})}
    assert docs["model.kind"] == ("fusion", "classifier kind (a module of models/kinds/) (valid: not empty, one of "
                                            "a, b-c)")
    assert docs["train.mixed_precision"][1].endswith("(valid: one of auto, 'no', fp16, bf16)")  # `no` is false in YAML
    assert docs["model.fusion.lora_towers"] == ("[text, image]", docs["model.fusion.lora_towers"][1])
    assert docs["model.fusion.lora_towers"][1].endswith("(valid: each one of text, image)")
    assert "each one of sigmoid, hinge, ipo," in docs["dpo.loss_type"][1]
    assert docs["train.time_budget"][0] == "null" and docs["data.text.nfc"][0] == "true"
