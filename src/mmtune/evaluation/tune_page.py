"""The page of a `mmtune tune` folder: the trial table, the optimisation history and the parameter importances,
one self-contained HTML file (figures inline as PNG, nothing fetched)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmtune.evaluation import figures
from mmtune.evaluation.report import Figure, templates
from mmtune.outputs import atomic_open


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    value: float | None  # the objective of a complete trial
    last_reported: float | None  # the last per-epoch value a trial reported (where a pruned trial stopped)
    seconds: float | None
    worker: str  # host:pid that ran it (a shared study has several)
    params: dict[str, Any]


@dataclass
class TunePage:
    title: str
    metric: str
    maximize: bool
    keys: list[str]  # the searched config keys, in tune.space order
    trials: list[TrialRow]
    importances: dict[str, float] = field(default_factory=dict)  # key -> share of the objective's variance
    importance_note: str | None = None  # why there are no importances
    best_config: str | None = None  # best.yaml, when a trial completed

    @property
    def best(self) -> TrialRow | None:
        complete = [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]
        if not complete:
            return None
        return (max if self.maximize else min)(complete, key=lambda t: t.value)


@figures.plain_text
def history_png(trials: list[TrialRow], metric: str, maximize: bool) -> bytes:
    """Each complete trial's value, each pruned trial's last reported value, and the best so far."""
    plt = figures.pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.6))
    complete = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    pruned = [t for t in trials if t.state == "PRUNED" and t.last_reported is not None]
    axis.plot([t.number for t in complete], [t.value for t in complete], "o", color="#4a7fd0", label="complete")
    if pruned:
        axis.plot([t.number for t in pruned], [t.last_reported for t in pruned], "x", color="#888888",
                  label="pruned (last reported)")
    best, running = [], -math.inf if maximize else math.inf
    for t in sorted(complete, key=lambda t: t.number):
        running = max(running, t.value) if maximize else min(running, t.value)
        best.append((t.number, running))
    if best:
        axis.step([n for n, _ in best], [v for _, v in best], where="post", color="#b3261e", label="best so far")
    axis.set(title="optimisation history", xlabel="trial", ylabel=f"validation {figures.short_label(metric)}")
    axis.xaxis.get_major_locator().set_params(integer=True)  # trials are numbered
    axis.legend(fontsize=8)
    return figures.png_bytes(figure)


@figures.plain_text
def importance_png(importances: dict[str, float]) -> bytes:
    """fANOVA importances as horizontal bars, the most important on top."""
    plt = figures.pyplot()
    ranked = sorted(importances.items(), key=lambda item: item[1])
    figure, axis = plt.subplots(figsize=(7, 0.9 + 0.45 * len(ranked)))
    axis.barh([figures.short_label(key) for key, _ in ranked], [value for _, value in ranked], color="#4a7fd0")
    axis.set(title="parameter importances", xlabel="share of the objective's variance (fANOVA)", xlim=(0, 1))
    return figures.png_bytes(figure)


def figure_blocks(page: TunePage) -> list[Figure]:
    blocks = []
    if any(t.value is not None or t.last_reported is not None for t in page.trials):
        blocks.append(Figure("optimisation history", "optimisation history",
                             history_png(page.trials, page.metric, page.maximize)))
    if page.importances:
        blocks.append(Figure("parameter importances", "parameter importances", importance_png(page.importances)))
    return blocks


def render_tune_page(page: TunePage) -> str:
    states: dict[str, int] = {}
    for trial in page.trials:
        states[trial.state] = states.get(trial.state, 0) + 1
    return templates().get_template("tune_report.html").render(
        page=page, best=page.best, states=sorted(states.items()), figures=figure_blocks(page),
        importances=sorted(page.importances.items(), key=lambda item: -item[1]))


def write_tune_page(page: TunePage, out: Path) -> Path:
    # why backslashreplace: a lone surrogate in a shared study's worker name cannot be UTF-8; it shows escaped
    with atomic_open(out, "w", encoding="utf-8", errors="backslashreplace") as handle:
        handle.write(render_tune_page(page))
    return out
