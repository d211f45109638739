"""Imports run one way, downwards (DESIGN.md, Layout): read from the source with `ast`, not by importing it.

Every import statement counts, also those inside functions and under TYPE_CHECKING: a lazy import is still a
dependency of the module.
"""

import ast
from pathlib import Path

import pytest

import mmtune

SRC = Path(mmtune.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The mmtune modules `path` imports; `from mmtune.x import y` counts as mmtune.x and mmtune.x.y."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {module for module in found if module == "mmtune" or module.startswith("mmtune.")}


GRAPH = {_module_name(path): _imports(path) for path in sorted(SRC.rglob("*.py"))}


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _offenders(lower: str, upper: tuple[str, ...]) -> list[str]:
    return sorted(f"{module} imports {target}" for module, targets in GRAPH.items() if _inside(module, lower)
                  for target in targets if any(_inside(target, package) for package in upper))


def test_the_graph_is_read():
    assert _imports(SRC / "training" / "loop.py") >= {"mmtune.objectives", "mmtune.models.base"}
    assert "mmtune.objectives" in GRAPH and "mmtune.models.fusion" in GRAPH


@pytest.mark.parametrize("lower", ["mmtune.models", "mmtune.data", "mmtune.objectives"])
def test_components_below_training_do_not_import_it(lower):
    assert _offenders(lower, ("mmtune.training",)) == []


def test_objectives_import_neither_models_nor_training_nor_config():
    # config.py imports the objectives' names to check train.loss, so the way back would be a cycle.
    assert _offenders("mmtune.objectives", ("mmtune.models", "mmtune.training", "mmtune.config")) == []


def test_models_get_their_output_size_from_the_caller_not_from_the_objectives():
    assert _offenders("mmtune.models", ("mmtune.objectives",)) == []


# The house (issue 10): recipes wire components; the CLI and the API call recipes; components never look up.
COMPONENTS = ("mmtune.data", "mmtune.models", "mmtune.training", "mmtune.evaluation", "mmtune.ensemble",
              "mmtune.generative", "mmtune.objectives", "mmtune.config", "mmtune.errors", "mmtune.files",
              "mmtune.terminal", "mmtune.outputs", "mmtune.compat", "mmtune.cli_args", "mmtune.durations")
FRONT = ("mmtune.cli", "mmtune.api")


def test_the_recipes_layer_is_read():
    assert "mmtune.recipes.train" in GRAPH and "mmtune.recipes.train" in GRAPH["mmtune.recipes.cv"]


def test_recipes_import_neither_the_cli_nor_the_api():
    assert _offenders("mmtune.recipes", FRONT) == []


@pytest.mark.parametrize("lower", COMPONENTS)
def test_components_import_no_recipe_nor_the_cli_nor_the_api(lower):
    assert _offenders(lower, ("mmtune.recipes", *FRONT)) == []


@pytest.mark.parametrize("front", FRONT)
def test_the_cli_and_the_api_reach_components_only_through_recipes(front):
    allowed = ("mmtune.recipes", "mmtune.config", "mmtune.cli_args", "mmtune.errors", "mmtune.terminal",
               "mmtune.outputs", *FRONT)
    reached = sorted(f"{module} imports {target}" for module, targets in GRAPH.items() if _inside(module, front)
                     for target in targets if target not in ("mmtune", "mmtune.__version__")
                     and not any(_inside(target, p) for p in allowed))
    assert reached == []


def test_ensemble_does_not_import_training():
    # cv orchestration (which trains) is a recipe; the ensemble package only reads and blends predictions.
    assert _offenders("mmtune.ensemble", ("mmtune.training",)) == []


def test_outputs_imports_no_mmtune_package():
    packages = {_module_name(path.parent) for path in SRC.rglob("__init__.py")} - {"mmtune"}
    assert _offenders("mmtune.outputs", tuple(sorted(packages))) == []


def test_config_imports_no_training():
    # time_budget is checked with mmtune.durations (standard library only), not the training package.
    assert _offenders("mmtune.config", ("mmtune.training",)) == []


def test_predict_builds_no_training_loop():
    # `mmtune predict` has its own small path (training.inference), shared with the loop's evaluation.
    assert "mmtune.training.loop.TrainingLoop" not in GRAPH["mmtune.recipes.predict"]
    assert "mmtune.training.inference.predict_probs" in GRAPH["mmtune.recipes.predict"]
