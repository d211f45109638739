"""The page of a tune folder (output_dir/report.html, written at the end of `mmtune tune`, or by `mmtune report
TUNE_FOLDER`): its study's trials, optimisation history and fANOVA parameter importances.

A tune folder holds tune-config.yaml (the resolved config `mmtune tune` ran with: its tune.storage and tune.study
name the study) or, from before that file, best.yaml (the same config with the best values)."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from mmtune.config import Config, load_config
from mmtune.errors import InputError
from mmtune.evaluation.tune_page import TrialRow, TunePage, write_tune_page
from mmtune.outputs import check_outputs

log = logging.getLogger(__name__)

TUNE_CONFIG_FILE, PAGE_FILE = "tune-config.yaml", "report.html"
# The files `mmtune tune` writes: the default SQLite study, the trial table, the best config.
STUDY_FILE, TRIALS_FILE, BEST_FILE = "study.db", "trials.csv", "best.yaml"


def is_tune_folder(folder: Path) -> bool:
    return (folder / TUNE_CONFIG_FILE).is_file() or ((folder / BEST_FILE).is_file()
                                                      and (folder / TRIALS_FILE).is_file())


# The full storage URL when the folder's config holds it without its password (mmtune never writes one).
STORAGE_ENV = "MMTUNE_TUNE_STORAGE"
_HIDDEN = ":***@"


def storage_url(cfg: Config, folder: Path) -> str:
    return cfg.tune.storage or f"sqlite:///{(folder / STUDY_FILE).resolve()}"


def config_to_write(cfg: Config) -> Config:
    """The config as a tune folder stores it: a database password in tune.storage is replaced by *** (output
    folders are shared and uploaded; the password is not theirs to carry)."""
    if not cfg.tune.storage or shown_url(cfg.tune.storage) == cfg.tune.storage:
        return cfg
    return replace(cfg, tune=replace(cfg.tune, storage=shown_url(cfg.tune.storage)))


def page_of(study: Any, cfg: Config, title: str, best_config: Path | None) -> TunePage:
    import optuna

    rows = []
    for trial in study.get_trials(deepcopy=False):
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if (
            trial.datetime_complete and trial.datetime_start) else None
        steps = trial.intermediate_values
        rows.append(TrialRow(number=trial.number, state=trial.state.name, value=trial.value,
                             last_reported=steps[max(steps)] if steps else None, seconds=seconds,
                             worker=str(trial.user_attrs.get("worker", "")), params=dict(trial.params)))
    page = TunePage(title=title, metric=cfg.train.metric, keys=list(cfg.tune.space), trials=rows,
                    maximize=study.direction == optuna.study.StudyDirection.MAXIMIZE,
                    best_config=str(best_config) if best_config else None)
    page.importances, page.importance_note = importances(study)
    return page


def importances(study: Any) -> tuple[dict[str, float], str | None]:
    """fANOVA importances over the complete trials (seeded: the same study gives the same page)."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}, f"parameter importances need 2 complete trials; the study has {len(complete)}"
    try:
        values = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError) as exc:  # e.g. every complete trial has the same values
        return {}, f"no parameter importances: {exc}"
    return {key: float(value) for key, value in values.items()}, None


def write_page(study: Any, cfg: Config, folder: Path, best_config: Path | None) -> Path:
    return write_tune_page(page_of(study, cfg, folder.name, best_config), folder / PAGE_FILE)


def report_tune_folder(folder: Path, out: Path | None = None) -> Path:
    """`mmtune report TUNE_FOLDER`: the page of the study the folder's config names (default: FOLDER/report.html)."""
    config_path = folder / TUNE_CONFIG_FILE if (folder / TUNE_CONFIG_FILE).is_file() else folder / BEST_FILE
    out = out or folder / PAGE_FILE
    check_outputs({"--out": out}, {name: folder / name for name in (TUNE_CONFIG_FILE, BEST_FILE, TRIALS_FILE,
                                                                     STUDY_FILE)})
    cfg = load_config(config_path)
    study = load_study(cfg, folder)
    best = folder / BEST_FILE
    return write_tune_page(page_of(study, cfg, folder.name, best if best.is_file() else None), out)


def load_study(cfg: Config, folder: Path) -> Any:
    import optuna

    url = os.environ.get(STORAGE_ENV) or storage_url(cfg, folder)
    if _HIDDEN in url:
        raise InputError(f"{folder}: tune.storage is stored without its password ({url}); set {STORAGE_ENV} to the "
                         "full URL")
    if not cfg.tune.storage and not (folder / STUDY_FILE).is_file():
        raise InputError(f"{folder / STUDY_FILE}: not found; the tune folder's study is stored there "
                         "(or set tune.storage)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return optuna.load_study(study_name=cfg.tune.study, storage=url)
        except KeyError:
            raise InputError(f"{shown_url(url)}: holds no study '{cfg.tune.study}' (tune.study)") from None
        except Exception as exc:  # why: a damaged or foreign database file is bad input, not a crash
            log.debug(f"loading the study: {exc!r}")
            raise InputError(f"{shown_url(url)}: cannot read the Optuna study ({type(exc).__name__})") from None


def shown_url(url: str) -> str:
    """A storage URL without its password (postgresql://user:secret@host/db -> postgresql://user:***@host/db)."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if at and ":" in credentials:
        credentials = credentials.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{credentials}{at}{host}"
