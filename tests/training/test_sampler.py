from collections import Counter

import pytest
import torch

from mmtune.training.sampler import EpochSampler, balanced_weights, epoch_seed


def _order(sampler: EpochSampler, epoch: int) -> list[int]:
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("weights", [None, [1.0] * 50 + [5.0] * 50])
def test_order_depends_only_on_seed_and_epoch(weights):
    first = EpochSampler(100, seed=7, weights=weights)
    orders = [_order(first, epoch) for epoch in range(3)]
    # A fresh sampler (a resumed run) jumping straight to epoch 2 sees the same order.
    assert _order(EpochSampler(100, seed=7, weights=weights), 2) == orders[2]
    assert _order(first, 1) == orders[1]  # iterating again repeats the epoch
    assert orders[0] != orders[1] != orders[2]
    assert _order(EpochSampler(100, seed=8, weights=weights), 0) != orders[0]


def test_shuffled_epoch_is_a_permutation_and_unshuffled_is_in_order():
    assert sorted(_order(EpochSampler(50, seed=0), 3)) == list(range(50))
    assert _order(EpochSampler(50, seed=0, shuffle=False), 3) == list(range(50))
    assert list(EpochSampler(0, seed=0)) == []


@pytest.mark.parametrize(("n", "weights"), [(0, None), (1, None), (37, None), (37, [1.0] * 37)])
def test_length(n, weights):
    sampler = EpochSampler(n, seed=1, weights=weights)
    assert len(sampler) == n and len(list(sampler)) == n


def test_global_torch_rng_is_untouched():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    for weights in (None, [1.0, 2.0, 3.0, 4.0]):
        sampler = EpochSampler(4, seed=5, weights=weights)
        for epoch in range(3):
            _order(sampler, epoch)
    assert torch.equal(torch.get_rng_state(), before)


def test_seed_mixing_separates_neighbouring_pairs():
    assert len({epoch_seed(seed, epoch) for seed in range(20) for epoch in range(20)}) == 400


def test_balanced_weights():
    assert balanced_weights([0, 0, 0, 0, 1]) == [0.25, 0.25, 0.25, 0.25, 1.0]
    assert balanced_weights([0, 0, 0, 0, 1], power=0.5) == [0.5, 0.5, 0.5, 0.5, 1.0]
    assert balanced_weights([2, 2], power=0.0) == [1.0, 1.0]


@pytest.mark.parametrize(("power", "expected_share"), [
    (1.0, [1 / 3, 1 / 3, 1 / 3]),
    (0.5, [30 / 43, 10 / 43, 3 / 43]),  # counts 900, 100, 9 -> sqrt 30, 10, 3
])
def test_balanced_sampling_draws_classes_in_the_intended_shares(power, expected_share):
    targets = [0] * 900 + [1] * 100 + [2] * 9
    sampler = EpochSampler(len(targets), seed=11, weights=balanced_weights(targets, power))
    drawn = Counter(targets[i] for epoch in range(5) for i in _order(sampler, epoch))
    total = sum(drawn.values())
    assert total == 5 * len(targets)
    for cls, share in enumerate(expected_share):
        # ~5000 draws: one standard deviation of a share is at most 0.007
        assert drawn[cls] / total == pytest.approx(share, abs=0.03)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"weights": [1.0, 2.0]}, "one value per sample"),
    ({"weights": [1.0, -1.0, 1.0]}, "non-negative"),
    ({"weights": [0.0, 0.0, 0.0]}, "not all zero"),
    ({"weights": [1.0, 1.0, 1.0], "shuffle": False}, "shuffle=False"),
])
def test_bad_weights_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EpochSampler(3, seed=0, **kwargs)
