"""What every registered objective promises the loop and the model kinds; a new objective is checked here too."""

import warnings

import pytest
import torch

from mmtune.config import TrainConfig
from mmtune.errors import InputError
from mmtune.objectives import get_objective, known_objectives
from mmtune.sarcasm import SARCASM_LABELS
from tests.objectives.helpers import build, logits_and_targets

SARCASM = sorted(SARCASM_LABELS)  # image, multi, not, text: the inferred (sorted) order


def test_the_names_are_the_objective_modules():
    assert {"bits", "ce", "focal"} <= set(known_objectives()) and known_objectives() == sorted(known_objectives())
    assert all(get_objective(name).name == name for name in known_objectives())


def test_an_unknown_objective_names_train_loss_and_the_known_ones():
    with pytest.raises(InputError) as error:
        get_objective("hinge")
    assert str(error.value) == f"train.loss: unknown objective 'hinge' (known: {', '.join(known_objectives())})"
    assert "bits, ce, focal" in str(error.value)
    with pytest.raises(InputError, match="train.loss"):
        get_objective("_common")  # a shared helper module is no objective


@pytest.mark.parametrize(("name", "labels", "size"), [
    ("ce", SARCASM, 4), ("focal", ["a", "b"], 2), ("bits", SARCASM, 2)])
def test_output_size_and_class_log_probs(name, labels, size):
    objective = get_objective(name)
    assert objective.output_size(len(labels)) == size
    outputs, _ = logits_and_targets(batch=3, classes=size)
    log_probs = objective.class_log_probs(outputs, labels)
    assert log_probs.shape == (3, len(labels))
    torch.testing.assert_close(log_probs.exp().sum(dim=1), torch.ones(3))


@pytest.mark.parametrize("name", known_objectives())
def test_label_smoothing_out_of_range_names_the_key(name):
    with pytest.raises(InputError, match="train.label_smoothing"):
        get_objective(name).build_loss([6, 3, 1, 1], SARCASM, TrainConfig(loss=name, label_smoothing=1.5))


@pytest.mark.parametrize(("name", "options"), [
    ("ce", {}), ("ce", {"class_weights": "inverse", "label_smoothing": 0.1}),
    ("focal", {"focal_gamma": 2.0}), ("focal", {"class_weights": "effective_number", "focal_gamma": 1.0}),
    ("bits", {}), ("bits", {"class_weights": "sqrt_inverse", "label_smoothing": 0.05}),
])
def test_a_few_sgd_steps_lower_each_loss(name, options):
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(64, 8, generator=generator)
    targets = torch.randint(0, 4, (64,), generator=generator)
    counts = torch.bincount(targets, minlength=4).tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every class is present: no empty-class warning expected
        loss_fn = build(name, counts, SARCASM, **options)
    model = torch.nn.Linear(8, get_objective(name).output_size(4))
    torch.nn.init.normal_(model.weight, generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = loss_fn(model(features), targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
