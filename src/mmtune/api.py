"""The Python API for notebooks: the same recipes as the CLI, called with Python values.

    from mmtune import api
    cfg = api.config("configs/vilt-t4.yaml", ["train.epochs=3"])     # or api.config(model={"kind": "fusion", ...})
    run = api.fit(cfg)                                              # = mmtune train
    model = api.load("export-folder")                               # = what mmtune export wrote
    probs = run.predict_proba("test.json", images="test-images")   # = mmtune predict
    result = api.cv(cfg)                                            # = mmtune cv
    ens = api.ensemble([result.cv_dir], out="ens.csv", method="stack", calibrate=True)  # = mmtune ensemble
    private = api.predict("ens.json", "private.json", images="private-images")      # = mmtune predict

Bad input raises `mmtune.errors.InputError` with the line the CLI would print.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmtune.config import Config, build, load_config, to_dict
from mmtune.errors import InputError
from mmtune.evaluation.predictions import Predictions
from mmtune.recipes.cv import CVResult, run_cv
from mmtune.recipes.ensemble import EnsembleRequest, EnsembleResult, run_ensemble
from mmtune.recipes.preflight import check_run
from mmtune.terminal import quiet_known_noise

# A notebook never runs the CLI's logging setup: hide the same known library noise (show_known_noise undoes it).
quiet_known_noise()


def config(path: str | Path | None = None, overrides: Sequence[str] | None = None, **sections: Any) -> Config:
    """A checked Config from a YAML file and `a.b=value` overrides, or from sections given in code
    (`api.config(output_dir="runs/x", model={"kind": "fusion", ...})`), or both (keywords win)."""
    cfg = load_config(path, list(overrides or []))
    if not sections:
        return cfg
    merged = _merge(to_dict(cfg), sections)
    return build(Config, merged, source=str(path) if path else "api.config")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@dataclass
class Run:
    """A trained run folder: what `fit` returns and `predict_proba` reads. `config`: the config the run resolved
    (label order, batch plan), when `fit` trained it."""

    run_dir: Path
    stopped: str = "finished"
    config: Config | None = None

    def predict_proba(self, data: str | Path, images: str | Path | None = None,
                      tta_flip: bool = False) -> Predictions:
        from mmtune.recipes.predict import predict

        return predict(self.run_dir, Path(data), Path(images) if images else None, tta_flip=tta_flip)


def fit(cfg: Config, resume: bool = False) -> Run:
    """Train one run into cfg.output_dir (`mmtune train`); train.time_budget counts from this call."""
    from mmtune.recipes.train import train

    check_run(cfg)  # what the CLI checks before any work: input files, output clashes, model folders
    run = train(cfg, resume=resume, budget_from_call=True)
    return Run(Path(cfg.output_dir), stopped=run.stopped, config=run.config)


@dataclass
class Model:
    """An export folder (`mmtune export`) loaded once: its labels, and probabilities for a data file or for posts."""

    folder: Path
    predictor: Any  # mmtune.serving.predictor.Predictor

    @property
    def labels(self) -> list[str]:
        return list(self.predictor.labels)

    def predict_proba(self, data: str | Path, images: str | Path | None = None,
                      tta_flip: bool = False) -> Predictions:
        from mmtune.recipes.exported import predict_loaded

        return predict_loaded(self.predictor, Path(data), Path(images) if images else None, tta_flip=tta_flip)


def load(folder: str | Path) -> Model:
    """An export folder, loaded (`mmtune export` wrote it): `api.load("export").predict_proba("test.json")`."""
    from mmtune.recipes.exported import load_export

    return Model(Path(folder), load_export(Path(folder)))


def load_run(run_dir: str | Path) -> Run:
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise InputError(f"{run_dir}: not a run folder (no config.yaml)")
    return Run(run_dir)


def cv(cfg: Config) -> CVResult:
    """k-fold cross-validation into cfg.output_dir (`mmtune cv`); train.time_budget counts from this call."""
    check_run(cfg)
    return run_cv(cfg, budget_from_call=True)


def ensemble(inputs: Sequence[str | Path], out: str | Path, method: str = "mean",
             tests: Sequence[str | Path] | None = None, rules: str | Path | None = None,
             label_map: str | Path | None = None, calibrate: bool | str = False, seed: int = 0,
             force_rules: bool = False) -> EnsembleResult:
    """Blend OOF files or cv folders fitted on OOF (`mmtune ensemble`).

    calibrate: False, True (= "auto": the macro-F1 biases only when their nested-CV gain is positive) or "always".
    force_rules: apply the rules that lower OOF macro-F1 too.
    """
    request = EnsembleRequest(inputs=[Path(p) for p in inputs], out=Path(out), method=method,
                              tests=[Path(p) for p in tests] if tests else None,
                              label_map=Path(label_map) if label_map else None, rules=Path(rules) if rules else None,
                              calibrate="auto" if calibrate is True else (calibrate or None), seed=seed,
                              force_rules=force_rules)
    return run_ensemble(request)


def predict(source: str | Path, data: str | Path, images: str | Path | None = None, out: str | Path | None = None,
            tta_flip: bool = False) -> Predictions:
    """`mmtune predict`: a run folder, a cv folder (the mean of its fold models, as its test.csv) or the .json an
    ensemble wrote (its input folders re-run, then its saved blend) on a data file; with `out`, also the CSV."""
    from mmtune.recipes.predict_ensemble import predict_source
    from mmtune.recipes.preflight import check_predict

    source, data, out = Path(source), Path(data), Path(out) if out else None
    check_predict(source, data, out)  # what the CLI checks first: the data, --out clashes, the runs and models
    return predict_source(source, data, Path(images) if images else None, out, tta_flip=tta_flip)
