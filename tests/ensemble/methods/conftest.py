"""Members' probabilities [N, M, K] built in the test: a good member and a weak one."""

import numpy as np
import pytest


def member(targets, strength, rng, log_prior=0.0):
    """A member that knows the answer with `strength` (a logit boost), optionally leaning on class priors."""
    logits = rng.normal(0, 1, size=(len(targets), 4)) + log_prior
    logits[np.arange(len(targets)), targets] += strength
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


@pytest.fixture
def good_and_weak():
    """(X [300, 2, 4] with the good member first, targets, folds)."""
    rng = np.random.default_rng(0)
    targets = rng.choice(4, size=300, p=[0.2, 0.35, 0.4, 0.05])
    X = np.stack([member(targets, 2.5, rng), member(targets, 0.3, rng)], axis=1)
    return X, targets, np.arange(300) % 5
