"""Hostile configs: unreadable files, YAML tricks, out-of-range values, repeated labels, unusable model paths.

Each is refused when the config is read, before any work: exit 2 and one line naming the file and key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import typing

import pytest
from PIL import Image

from mmtune.config import Config, describe_schema, load_config
from mmtune.errors import InputError
from tests.hostile.conftest import assert_one_line_error, run_mmtune


def write(tmp_path, content: bytes | str, name: str = "c.yaml"):
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


# ----------------------------------------------------------------------------------------------
# The file itself


def test_config_not_utf8_names_file_and_byte(tmp_path):
    path = write(tmp_path, b"seed: 1\nname: caf\xe9\n")
    line = assert_one_line_error(run_mmtune("config", "--config", path), "c.yaml", "not UTF-8", "byte 17", "line 2")
    assert "\\xe9" in line


def test_config_with_a_utf8_bom_is_read(tmp_path):
    assert load_config(write(tmp_path, "\ufeffname: café\n")).name == "café"


def test_config_that_is_a_folder(tmp_path):
    assert_one_line_error(run_mmtune("train", tmp_path), str(tmp_path), "is a folder, not a config file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_config_that_is_a_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "c.yaml"
    os.mkfifo(fifo)
    assert_one_line_error(run_mmtune("train", fifo, timeout=30), "c.yaml", "is a FIFO, not a config file")


def test_config_that_is_a_device_is_not_read_without_limit():
    result = run_mmtune("config", "--config", "/dev/zero", timeout=30)
    assert_one_line_error(result, "/dev/zero", "is a device, not a config file")


def test_huge_config_is_refused(tmp_path):
    path = write(tmp_path, "name: run\n" + "# padding\n" * 200_000)
    with pytest.raises(InputError, match=r"c\.yaml: config file larger than 1024 KiB"):
        load_config(path)


def billion_laughs(levels: int = 10) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        aliases = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{aliases}]")
    return "\n".join(lines) + f"\ndata:\n  bad_faults: *a{levels - 1}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (billion_laughs(), r"invalid YAML at line \d+ \(more than 50 aliases"),
        ("[" * 100_000 + "\n", r"invalid YAML at line 1 \(nested more than 64 levels deep\)"),
        ("seed: 1\nname: a\nseed: 2\n", r"invalid YAML at line 3 \(key 'seed' appears twice\)"),
        ("data:\n  columns:\n    id: a\n    id: b\n", r"line 4 \(key 'id' appears twice\)"),
        ("1: a\n", r"invalid YAML at line 1 \(key '1' is not text \(quote it\)\)"),
        ("model:\n  vlm:\n    label_words: {yes: x}\n", r"key 'yes' is not text"),
        ("x: !!python/object/apply:os.system ['echo pwned']\n", r"invalid YAML at line 1 \(could not determine"),
        ("name: 2024-13-45\n", r"invalid YAML value \(month must be in 1\.\.12\)"),
        ("name: \x07\n", r"invalid YAML"),
        ("name: [a\n", r"invalid YAML"),
    ],
)
def test_hostile_yaml_is_one_named_error(tmp_path, text, message):
    with pytest.raises(InputError, match=r"c\.yaml: .*" + message) as caught:
        load_config(write(tmp_path, text))
    assert "\n" not in str(caught.value)


def test_yaml_tag_payload_never_runs_and_is_one_line(tmp_path):
    marker = tmp_path / "pwned"
    path = write(tmp_path, f"x: !!python/object/apply:os.system ['touch {marker}']\n")
    assert_one_line_error(run_mmtune("config", "--config", path), "c.yaml", "invalid YAML")
    assert not marker.exists()


def test_merge_keys_and_a_few_aliases_still_work(tmp_path):
    path = write(tmp_path, "data:\n  columns: &cols {id: pid, text: body}\n  labels: &l [a, b]\n"
                           "cv:\n  group_by: [caption]\n")
    cfg = load_config(path)
    assert cfg.data.columns.id == "pid" and cfg.data.labels == ["a", "b"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("a..b=1", r"override 'a\.\.b=1': expected section\.key=value"),
        ("=1", r"expected section\.key=value"),
        ("seed", r"expected section\.key=value"),
        ("seed=", r"'seed' must be a whole number, got null$"),
        ("train=3", r"'train' must be a mapping"),
        ("train.lr=1" + "0" * 400, r"'train\.lr' is too large"),
        ("name=!!python/object:os.system", None),  # not YAML here: the text as typed is the run name
    ],
)
def test_odd_overrides(override, message):
    if message is None:
        assert load_config(None, [override]).name == "!!python/object:os.system"
        return
    with pytest.raises(InputError, match=message):
        load_config(None, [override])


def test_override_numbers_yaml_reads_as_text_are_numbers():
    assert load_config(None, ["train.lr=1e-3"]).train.lr == pytest.approx(1e-3)


# ----------------------------------------------------------------------------------------------
# Ranges


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size=-1", r"'train\.batch_size' must be >= 0, got -1"),
        ("train.grad_accum=0", r"'train\.grad_accum' must be >= 1, got 0"),
        ("seed=-1", r"'seed' must be in \[0, 4294967295\], got -1"),
        ("seed=99999999999999999999", r"'seed' must be in \[0, 4294967295\], got 99999999999999999999"),
        ("model.fusion.dropout=1.5", r"'model\.fusion\.dropout' must be in \[0, 1\), got 1\.5"),
        ("train.num_workers=-1", r"'train\.num_workers' must be >= 0"),
        ("model.fusion.projection_dim=-5", r"'model\.fusion\.projection_dim' must be >= 1, got -5"),
        ("model.fusion.projection_dim=0", r"'model\.fusion\.projection_dim' must be >= 1, got 0"),
        ("train.reference_batch_size=0", r"'train\.reference_batch_size' must be >= 1"),
        ("train.lr=-1", r"'train\.lr' must be >= 0, got -1"),
        ("train.epochs=-3", r"'train\.epochs' must be >= 1, got -3"),
        ("train.epochs=0", r"'train\.epochs' must be >= 1, got 0"),
        ("train.warmup_ratio=-1", r"'train\.warmup_ratio' must be in \[0, 1\]"),
        ("train.head_lr=.nan", r"'train\.head_lr' must be a finite number, got NaN$"),
        ("train.lr=.inf", r"'train\.lr' must be a finite number"),
        ("train.weight_decay=-.inf", r"'train\.weight_decay' must be a finite number"),
        ("train.lr=nan", r"'train\.lr' must be a number, got text 'nan'$"),  # YAML's NaN is .nan
        ("train.label_smoothing=1", r"'train\.label_smoothing' must be in \[0, 1\)"),
        ("train.focal_gamma=-0.5", r"'train\.focal_gamma' must be >= 0"),
        ("train.effective_number_beta=1", r"'train\.effective_number_beta' must be in \[0, 1\)"),
        ("train.eval_every_steps=-1", r"'train\.eval_every_steps' must be >= 0"),
        ("train.save_every_steps=-1", r"'train\.save_every_steps' must be >= 0"),
        ("train.log_every_steps=0", r"'train\.log_every_steps' must be >= 1"),
        ("train.early_stopping_patience=-2", r"'train\.early_stopping_patience' must be >= 0"),
        ("train.max_grad_norm=-1", r"'train\.max_grad_norm' must be >= 0"),
        ("train.effective_batch_size=0", r"'train\.effective_batch_size' must be >= 1"),
        ("train.time_budget=-5m", r"train\.time_budget'?: cannot read duration '-5m'"),
        ("train.time_budget=soon", r"train\.time_budget'?: cannot read duration 'soon'"),
        ("cv.folds=1", r"'cv\.folds' must be >= 2, got 1"),
        ("cv.only=[-1]", r"'cv\.only\[0\]' must be >= 0, got -1"),
        ("cv.only=[0,5]", r"'cv\.only' fold 5 does not exist with cv\.folds=5"),
        ("train.val_fold=5", r"'train\.val_fold' must be in \[0, 4\] with cv\.folds=5, got 5"),
        ("data.text.max_words=0", r"'data\.text\.max_words' must be >= 1"),
        ("data.text.extra_max_words=-1", r"'data\.text\.extra_max_words' must be >= 1"),
        ("data.image.size=0", r"'data\.image\.size' must be >= 1, got 0"),
        ("data.image.max_pixels=0", r"'data\.image\.max_pixels' must be >= 1"),
        ("data.image.max_aspect=0.5", r"'data\.image\.max_aspect' must be >= 1"),
        ("data.image.pad_color=[0,300,0]", r"'data\.image\.pad_color\[1\]' must be in \[0, 255\], got 300"),
        ("data.image.augment.hflip=2", r"'data\.image\.augment\.hflip' must be in \[0, 1\]"),
        ("data.image.augment.rotation=-5", r"'data\.image\.augment\.rotation' must be in \[0, 180\]"),
        ("data.image.augment.scale=[0,1]", r"'data\.image\.augment\.scale\[0\]' must be in \(0, 10\]"),
        ("data.image.augment.scale=[1.2,0.8]", r"'data\.image\.augment\.scale' must be \(low, high\) with low <= high"),
        ("data.image.augment.crop=0", r"'data\.image\.augment\.crop' must be in \(0, 1\]"),
        ("data.image.augment.translate=1", r"'data\.image\.augment\.translate' must be in \[0, 1\)"),
        ("model.fusion.hidden_size=0", r"'model\.fusion\.hidden_size' must be >= 1"),
        ("model.vilt.max_length=0", r"'model\.vilt\.max_length' must be >= 1"),
        ("model.freeze.last_n=-1", r"'model\.freeze\.last_n' must be >= 0"),
        ("model.freeze.head_only_epochs=-1", r"'model\.freeze\.head_only_epochs' must be >= 0"),
        ("model.lora.r=0", r"'model\.lora\.r' must be >= 1"),
        ("model.lora.alpha=0", r"'model\.lora\.alpha' must be >= 1"),
        ("model.lora.dropout=1", r"'model\.lora\.dropout' must be in \[0, 1\)"),
        ("model.vlm.max_images=0", r"'model\.vlm\.max_images' must be >= 1"),
        ("model.vlm.image_size=0", r"'model\.vlm\.image_size' must be >= 1"),
        ("model.vlm.max_tiles=0", r"'model\.vlm\.max_tiles' must be >= 1"),
        ("model.vlm.max_pixels=-1", r"'model\.vlm\.max_pixels' must be >= 1"),
        ("chat.max_length=0", r"'chat\.max_length' must be >= 1"),
        ("dpo.beta=0", r"'dpo\.beta' must be > 0, got 0"),
        ("dpo.label_smoothing=0.5", r"'dpo\.label_smoothing' must be in \[0, 0\.5\)"),
    ],
)
def test_out_of_range_values_are_refused_at_load(override, message):
    with pytest.raises(InputError, match=message):
        load_config(None, [override])


@pytest.mark.parametrize("override", ["train.batch_size=0", "train.max_grad_norm=0", "train.lr=0", "seed=0",
                                      f"seed={2**32 - 1}", "train.val_fold=6", "cv.only=[6]"])
def test_range_edges_that_mean_something_are_accepted(override, tmp_path):
    extra = ["cv.folds=7"] if override.endswith("6") or override.endswith("[6]") else []
    load_config(None, [*extra, override])


def test_val_fold_and_cv_only_follow_a_folds_file():
    cfg = load_config(None, ["cv.folds_file=folds.csv", "train.val_fold=9", "cv.only=[9]"])
    assert cfg.train.val_fold == 9 and cfg.cv.only == [9]


def numeric_keys(cls: type = Config, prefix: str = "") -> list[tuple[str, dataclasses.Field]]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys += numeric_keys(tp, f"{prefix}{f.name}.")
            continue
        inner = {tp, *typing.get_args(tp)}
        inner |= {a for t in list(inner) for a in typing.get_args(t)}
        if inner & {int, float} and typing.get_origin(tp) is not typing.Literal:
            keys.append((f"{prefix}{f.name}", f))
    return keys


# Numbers that are a choice of index, not a quantity: any int is meaningful.
UNBOUNDED = {"build.vision_feature_layer", "build.stage"}


def test_every_numeric_key_has_a_range_shown_by_the_schema():
    keys = numeric_keys()
    assert len(keys) > 40
    missing = [key for key, f in keys if key not in UNBOUNDED and f.metadata.get("bounds") is None]
    assert not missing, missing
    docs = {key: text for key, _, text in describe_schema()}
    for key, f in keys:
        if key not in UNBOUNDED:
            assert f"valid: {f.metadata['bounds']}" in docs[key], (key, docs[key])


def test_every_float_key_refuses_nan():
    floats = [(key, str(f.type)) for key, f in numeric_keys() if "float" in str(f.type)]
    assert len(floats) > 15
    for key, tp in floats:
        with pytest.raises(InputError, match=f"'{re.escape(key)}(\\[0\\])?' must be a finite number"):
            load_config(None, [f"{key}=[.nan, 1]" if tp.startswith("tuple") else f"{key}=.nan"])


def test_schema_command_shows_ranges():
    result = run_mmtune("config", "--schema")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert re.search(r"train\.batch_size = 16 .*valid: >= 0", text)
    assert re.search(r"model\.fusion\.dropout = 0\.1 .*valid: in \[0, 1\)", text)


def test_epochs_out_of_range_exits_2_before_any_work(tmp_path):
    result = run_mmtune("train", write(tmp_path, f"output_dir: {tmp_path / 'run'}\n"), "train.epochs=-3")
    assert_one_line_error(result, "'train.epochs' must be >= 1, got -3")
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------------
# Strings and labels


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ('data.columns.image_sep=""', r"'data\.columns\.image_sep' must not be empty"),
        ('data.columns.id=""', r"'data\.columns\.id' must not be empty"),
        ('data.columns.text=""', r"'data\.columns\.text' must not be empty"),
        ('data.columns.label=""', r"'data\.columns\.label' must not be empty"),
        ('data.columns.image=""', r"'data\.columns\.image' must not be empty"),
        ('data.columns.extra_text=[ocr, ""]', r"'data\.columns\.extra_text\[1\]' must not be empty"),
        ('output_dir=""', r"'output_dir' must not be empty"),
        ("data.labels=[not-sarcasm,not-sarcasm,image-sarcasm]", r"'data\.labels' lists 'not-sarcasm' twice"),
        ("data.labels=[1,2]", r"'data\.labels\[0\]' must be text, got a number \(1\) \(quote it in YAML\)$"),
        ("data.labels=[a, .nan]", r"'data\.labels\[1\]' must be text, got NaN \(quote it in YAML\)$"),
        ("data.labels=[a, null]", r"'data\.labels\[1\]' must be text, got null"),
        ("data.labels=[]", r"'data\.labels' must not be empty"),
        ('data.labels=[a, ""]', r"'data\.labels\[1\]' must not be empty"),
        ("cv.group_by=[image,image]", r"'cv\.group_by' lists 'image' twice"),
        ("dpo.loss_type=[]", r"'dpo\.loss_type' must not be empty"),
        ("train.log_with=[tensorboard,tensorboard]", r"'train\.log_with' lists 'tensorboard' twice"),
    ],
)
def test_empty_and_repeated_values_are_refused(override, message):
    with pytest.raises(InputError, match=message):
        load_config(None, [override])


def test_repeated_label_exits_2_naming_key_and_label(tmp_path):
    result = run_mmtune("config", "data.labels=[not-sarcasm,not-sarcasm,image-sarcasm,text-sarcasm]")
    assert_one_line_error(result, "data.labels", "not-sarcasm")


def test_empty_image_sep_exits_2(tmp_path):
    assert_one_line_error(run_mmtune("inspect", tmp_path / "d.csv", 'data.columns.image_sep=""'),
                          "data.columns.image_sep")


# ----------------------------------------------------------------------------------------------
# Settings that only mean something together: refused at load, not after the first epoch


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.metric=bogus"], r"'train\.metric' must be one of 'macro_f1'"),
        (["train.loss=bits", "data.labels=[not-sarcasm,image-sarcasm]"], r"'train\.loss' bits needs the 4 sarcasm"),
        (["model.freeze.preset=last_n", "model.freeze.last_n=0"], r"'model\.freeze\.last_n' must be >= 1 with"),
    ],
)
def test_settings_that_conflict_are_refused_at_load(overrides, message):
    with pytest.raises(InputError, match=message):
        load_config(None, overrides)


def test_metric_choices_are_the_metrics_module_s():
    from mmtune.config import TrainConfig
    from mmtune.evaluation.metrics import METRICS

    assert typing.get_args(typing.get_type_hints(TrainConfig)["metric"]) == METRICS


def test_bad_metric_exits_2_before_training(tmp_path):
    result = run_mmtune("train", write(tmp_path, f"output_dir: {tmp_path / 'run'}\n"), "train.metric=bogus")
    assert_one_line_error(result, "train.metric")
    assert result.stderr.strip().count("\n") == 0 and not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------------
# data.image.max_bytes reaches every place that loads an image, not only the checks


@pytest.fixture
def big_image(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(path)
    return path


def capped(max_bytes: int) -> Config:
    return dataclasses.replace(Config(), data=dataclasses.replace(
        Config().data, image=dataclasses.replace(Config().data.image, max_bytes=max_bytes)))


def test_every_image_loader_honours_data_image_max_bytes(tmp_path, big_image):
    # torch and transformers behind these: imported by these tests only
    from mmtune.data.images import ImageError
    from mmtune.data.post import Post
    from mmtune.evaluation.report import thumbnail
    from mmtune.generative.trainer_setup import _open
    from mmtune.models.image_pipeline import ImagePipeline

    size = big_image.stat().st_size
    cfg, roomy = capped(size - 1), capped(size)
    post = Post(id="1", images=(big_image,), text="x")
    # The one image path of the kinds (fusion towers: square, vilt: original, VLMs: within their image_size).
    loaders = {fit: lambda c, fit=fit: ImagePipeline(c.data.image, fit=fit, side=32).load(big_image)
               for fit in ("square", "within", "original")}
    for name, load in loaders.items():
        with pytest.raises(ImageError, match=rf"{size} bytes > data.image.max_bytes={size - 1}"):
            load(cfg)
        assert load(roomy), name
    with pytest.raises(InputError, match=rf"big\.png: unreadable image \({size} bytes > data.image.max_bytes"):
        _open(str(big_image), 10**8, 32, size - 1)
    assert thumbnail(post, cfg.data.image) is None
    assert thumbnail(post, roomy.data.image).startswith("data:image/jpeg;base64,")


def test_chat_data_is_read_with_the_configured_image_cap(tmp_path, big_image):
    from mmtune.generative.sft import read_chat_splits

    data = tmp_path / "c.jsonl"
    row = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    data.write_text(json.dumps({**row, "images": [big_image.name]}) + "\n" + json.dumps(row) + "\n",
                    encoding="utf-8")
    cfg = capped(big_image.stat().st_size - 1)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train=str(data), train_images=str(tmp_path)))
    splits = read_chat_splits(cfg)
    assert dict(splits.train.skipped) == {"unreadable_image": 1} and len(splits.train.rows) == 1


# ----------------------------------------------------------------------------------------------
# Messages name values in YAML/JSON words, never by Python type


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- a\n- b\n", "a config must be a mapping of sections, got a list"),
        ("train: [1, 2]\n", "'train' must be a mapping, got a list"),
        ("seed: {a: 1}\n", "'seed' must be a whole number, got an object"),
        ("seed: 3.5\n", "'seed' must be a whole number, got a number (3.5)"),
        ("name: [x]\n", "'name' must be text, got a list"),
        ("train:\n  lr: abc\n", "'train.lr' must be a number, got text 'abc'"),
        ("train:\n  lr: true\n", "'train.lr' must be a number, got true"),
        ("data:\n  labels: {a: 1}\n", "'data.labels' must be a list, got an object"),
        ("data:\n  text:\n    nfc: 2\n", "'data.text.nfc' must be true or false, got a number (2)"),
        ("data:\n  text:\n    urls: 2024-01-01\n", "'data.text.urls' must be one of 'keep', 'token', 'drop', got "
                                                  "the value '2024-01-01'"),
        (f"seed: {'9' * 100}x\n", f"'seed' must be a whole number, got text '{'9' * 36}..."),  # shown short
    ],
)
def test_config_messages_never_name_a_python_type(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(InputError) as info:
        load_config(path)
    error = str(info.value)
    line = "" if content.startswith("-") else r":\d+"  # a key's value: its file:line; the whole file: its name
    assert re.match(rf"{re.escape(str(path))}{line}: ", error) and message in error, error
    assert not re.search(r"\b(dict|str|int|float|bool|NoneType|date)\b", error), error


def test_a_lone_surrogate_in_a_config_value_is_refused_naming_the_key(tmp_path):
    # YAML's "\ud800" escape, or a byte that is not UTF-8 in an override (Python's argv gives it as \udce9).
    path = write(tmp_path, 'data:\n  labels: ["a\\ud800", "b"]\n')
    with pytest.raises(InputError) as info:
        load_config(path)
    assert str(info.value) == (f"{path}:2: 'data.labels[0]' is 'a\\ud800', not valid Unicode "
                               "(a lone surrogate \\ud800 at character 2)")
    line = assert_one_line_error(run_mmtune("config", "--config", write(tmp_path, "seed: 1\n", "ok.yaml"),
                                            os.fsdecode(b"name=caf\xe9")), "'name' is 'caf\\udce9', not valid Unicode")
    assert "Traceback" not in line
