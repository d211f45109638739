"""train.ema_decay: the weight average is what is evaluated, kept as best/ and resumed exactly."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from mmtune.config import load_config
from mmtune.errors import InputError
from mmtune.recipes.train import train
from mmtune.training.weight_average import AVERAGE_FILE, WeightAverage
from tests.training.conftest import fusion_config, write_config


def _layer():
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def test_the_first_update_copies_then_each_moves_by_one_minus_decay():
    layer = _layer()
    average = WeightAverage(dict(layer.named_parameters()), 0.9)
    with torch.no_grad():
        layer.weight.add_(1.0)
    average.update()  # the initial weights are not averaged in
    first = layer.weight.detach().clone()
    assert torch.equal(average.shadow["weight"], first)
    with torch.no_grad():
        layer.weight.add_(1.0)
    average.update()
    assert torch.allclose(average.shadow["weight"], 0.9 * first + 0.1 * (first + 1.0))
    assert average.updates == 2


def test_swapped_in_holds_the_average_and_gives_the_raw_weights_back_even_on_error():
    layer = _layer()
    average = WeightAverage(dict(layer.named_parameters()), 0.9)
    raw = layer.weight.detach().clone()
    average.shadow["weight"].fill_(7.0)
    with pytest.raises(RuntimeError), average.swapped_in():
        assert torch.all(layer.weight == 7.0)
        raise RuntimeError("evaluation failed")
    assert torch.equal(layer.weight, raw)


def test_save_and_load_round_trip(tmp_path):
    layer = _layer()
    average = WeightAverage(dict(layer.named_parameters()), 0.9)
    for _ in range(3):
        average.update()
    average.save(tmp_path)
    other = WeightAverage(dict(_layer().named_parameters()), 0.9)
    assert other.load(tmp_path) and other.updates == 3
    assert all(torch.equal(other.shadow[n], average.shadow[n]) for n in average.shadow)
    assert not WeightAverage(dict(layer.named_parameters()), 0.9).load(tmp_path / "elsewhere")


@pytest.mark.parametrize("tensors, meta, says", [
    ({"weight": torch.zeros(2, 3)}, {"updates": "3"}, "averages other parameters"),
    ({"weight": torch.zeros(3, 3), "bias": torch.zeros(2)}, {"updates": "3"}, r"has shape \[3, 3\]"),
    ({"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}, {"updates": "-1"}, "'updates' is not a count"),
    ({"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}, {"updates": "true"}, "'updates' is not a count"),
    ({"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}, {}, "'updates' is not a count"),
])
def test_a_tampered_average_is_an_input_error_naming_the_file(tmp_path, tensors, meta, says):
    save_file(tensors, str(tmp_path / AVERAGE_FILE), metadata=meta)
    with pytest.raises(InputError, match=says) as caught:
        WeightAverage(dict(_layer().named_parameters()), 0.9).load(tmp_path)
    assert AVERAGE_FILE in str(caught.value)


def test_damaged_average_file_is_an_input_error(tmp_path):
    (tmp_path / AVERAGE_FILE).write_bytes(b"\x00" * 40)
    with pytest.raises(InputError, match=AVERAGE_FILE):
        WeightAverage(dict(_layer().named_parameters()), 0.9).load(tmp_path)


def _fit(demo, tiny, tmp_path, name, **train_cfg):
    config = fusion_config(demo, tiny, tmp_path / name, epochs=2, full_fit=True, **train_cfg)
    train(load_config(write_config(config, tmp_path / f"{name}.yaml")))
    return tmp_path / name


def test_best_holds_the_average_and_last_the_raw_weights(demo_small, tiny_models, tmp_path):
    # full_fit: best/ is the last evaluation, i.e. the average at the end of training.
    run_dir = _fit(demo_small, tiny_models, tmp_path, "ema", ema_decay=0.9)
    best = load_file(str(run_dir / "best" / "trainable.safetensors"))
    raw = load_file(str(run_dir / "last" / "trainable.safetensors"))
    averaged = load_file(str(run_dir / "last" / AVERAGE_FILE))
    assert set(averaged) <= set(best)
    assert all(torch.equal(best[n], averaged[n]) for n in averaged)
    assert any(not torch.equal(best[n], raw[n]) for n in averaged)
    steps = json.loads((run_dir / "last" / "trainer_state.json").read_text())["global_step"]
    with safe_open(str(run_dir / "last" / AVERAGE_FILE), framework="pt") as handle:
        assert json.loads(handle.metadata()["updates"]) == steps


def test_ema_decay_0_keeps_the_raw_weights(demo_small, tiny_models, tmp_path):
    run_dir = _fit(demo_small, tiny_models, tmp_path, "raw", ema_decay=0.0)
    best = load_file(str(run_dir / "best" / "trainable.safetensors"))
    raw = load_file(str(run_dir / "last" / "trainable.safetensors"))
    assert not (run_dir / "last" / AVERAGE_FILE).exists()
    assert all(torch.equal(best[n], raw[n]) for n in best)
