"""The competition workflow after training: k-fold CV, out-of-fold predictions, blending, stacking, rules."""
