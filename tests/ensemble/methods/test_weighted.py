from mmtune.ensemble.methods.weighted import LogLossWeightsBlender


def test_log_loss_weights_favour_the_better_member(good_and_weak):
    X, targets, _ = good_and_weak
    assert LogLossWeightsBlender().fit(X, targets).weights_[0] > 0.7
