"""The learning-curve PNG of a run: training loss and the selection metric against optimizer steps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_learning_curve(history: Sequence[dict[str, Any]], metric: str, path: Path) -> Path | None:
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")  # why: no display on training machines
    import matplotlib.pyplot as plt

    steps = [record["step"] for record in history]
    figure, loss_axis = plt.subplots(figsize=(7, 4), dpi=100)
    losses = [record.get("train_loss") for record in history]
    if any(value is not None for value in losses):
        loss_axis.plot(steps, [v if v is not None else float("nan") for v in losses], "o-", color="tab:red",
                       label="train loss")
    loss_axis.set_xlabel("optimizer step")
    loss_axis.set_ylabel("train loss", color="tab:red")
    metric_axis = loss_axis.twinx()
    metric_axis.plot(steps, [record[metric] for record in history], "s-", color="tab:blue", label=f"val {metric}")
    metric_axis.set_ylabel(f"val {metric}", color="tab:blue")
    figure.suptitle("learning curve")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
