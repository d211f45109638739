from mmtune.ensemble.methods.greedy import GreedySelectionBlender
from mmtune.evaluation.calibration import macro_f1


def test_selection_favours_the_better_member(good_and_weak):
    X, targets, _ = good_and_weak
    greedy = GreedySelectionBlender().fit(X, targets)
    assert greedy.weights_[0] > greedy.weights_[1] and greedy.selection_macro_f1_ >= macro_f1(X[:, 0], targets)
