import numpy as np

from mmtune.ensemble.methods.best import BestInputBlender


def test_all_the_weight_goes_to_the_input_with_the_best_oof_macro_f1(good_and_weak):
    X, targets, _ = good_and_weak
    assert BestInputBlender().fit(X, targets).weights_.tolist() == [1.0, 0.0]
    swapped = X[:, ::-1]
    blender = BestInputBlender().fit(swapped, targets)
    assert blender.weights_.tolist() == [0.0, 1.0]
    np.testing.assert_allclose(blender.predict_proba(swapped), X[:, 0])
