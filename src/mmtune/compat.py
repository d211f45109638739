"""Work-arounds for behaviour of the libraries mmtune builds on; each names the versions that need it.

The only module allowed to reach into other libraries' objects. Keep each fix small, say why, and
delete it when the versions that need it are no longer supported.
"""

from __future__ import annotations

import functools

from torch import nn


def keep_bnb_4bit_training_layout(model: nn.Module) -> int:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference; returns how many layers it touched.

    bitsandbytes 0.50 (`Linear4bit.forward`), on CPUs with AVX512-BF16, converts a 4-bit weight in place to
    an inference-only packed layout the first time the layer runs in eval mode without gradients. A training
    loop evaluates between epochs, so later training steps would run on that layout, and the conversion
    fails outright for layers narrower than the quantization block (64), as in tiny test models. The layer
    exposes the switch as an attribute; it is set per layer, nothing global is changed.
    """
    touched = 0
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            touched += 1
    return touched


def cache_accelerate_lomo_check() -> None:
    """Answer accelerate's "is lomo_optim installed?" once per process instead of twice per optimizer step.

    accelerate 1.15 (`AcceleratedOptimizer.step`) calls `is_lomo_available()`, a search of sys.path and the
    package metadata, twice on every step: about 0.1 ms, which is 4% of a head-only step on cached
    features (benchmarks/loop_overhead.py). What is installed does not change while a run trains.
    """
    import accelerate.optimizer as accelerated_optimizer

    check = accelerated_optimizer.is_lomo_available
    if not hasattr(check, "cache_info"):
        accelerated_optimizer.is_lomo_available = functools.cache(check)
