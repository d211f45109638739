"""Imports run one way, downwards (DESIGN.md, Layout): read from the source with `ast`, not by importing it.

Every import statement counts, also those inside functions and under TYPE_CHECKING: a lazy import is still a
dependency of the module.
"""

import ast
import importlib
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


L0 = ("mmtune.errors", "mmtune.files", "mmtune.terminal", "mmtune.outputs", "mmtune.compat", "mmtune.cli_args",
      "mmtune.durations", "mmtune.sarcasm", "mmtune.registry", "mmtune.hub", "mmtune.progress")


def test_evaluation_imports_neither_ensemble_nor_training_nor_models_nor_recipes():
    assert _offenders("mmtune.evaluation", ("mmtune.ensemble", "mmtune.training", "mmtune.models",
                                            "mmtune.recipes")) == []


def test_objectives_import_only_foundation_modules():
    allowed = ("mmtune.objectives", *L0)
    found = sorted(f"{module} imports {target}" for module, targets in GRAPH.items()
                   if _inside(module, "mmtune.objectives") for target in targets
                   if target != "mmtune" and not any(_inside(target, package) for package in allowed))
    assert found == []


def test_the_sarcasm_scheme_imports_nothing_from_mmtune():
    assert GRAPH["mmtune.sarcasm"] == set()


def _cycles(package: str) -> list[list[str]]:
    """The module-level import cycles inside `package`: its strongly connected components of two or more modules
    (Tarjan's algorithm), each sorted."""
    nodes = sorted(module for module in GRAPH if _inside(module, package))
    edges = {module: sorted(target for target in GRAPH[module] if target in GRAPH and _inside(target, package)
                            and target != module) for module in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in edges[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for module in nodes:
        if module not in index:
            visit(module)
    return found


def test_the_cycle_check_finds_a_cycle(monkeypatch):
    assert "mmtune.models.backbone" in GRAPH["mmtune.models.towers"]
    monkeypatch.setitem(GRAPH, "mmtune.models.backbone", GRAPH["mmtune.models.backbone"] | {"mmtune.models.towers"})
    assert ["mmtune.models.backbone", "mmtune.models.towers"] in _cycles("mmtune.models")


def test_no_import_cycle_between_the_modules_of_models():
    assert _cycles("mmtune.models") == []


def test_only_the_make_tiny_verb_imports_the_testing_package():
    # Tiny models are scaffolding for tests, benchmarks and `mmtune make-tiny`: no component builds on them.
    importers = sorted(module for module, targets in GRAPH.items() if not _inside(module, "mmtune.testing")
                       and any(_inside(target, "mmtune.testing") for target in targets))
    assert [module for module in importers if module != "mmtune.cli" and not _inside(module, "mmtune.recipes")] == []


# The demo data generator sits beside data (it may import data and config); only the entry points use it.
DEMO_USERS = ("mmtune.demo", "mmtune.recipes", "mmtune.cli")


def test_only_the_entry_points_import_the_demo_generator():
    assert _offenders("mmtune.demo", ("mmtune.models", "mmtune.training", "mmtune.evaluation", "mmtune.ensemble",
                                      "mmtune.generative", "mmtune.testing", "mmtune.recipes", "mmtune.api",
                                      "mmtune.cli")) == []
    users = sorted(f"{module} imports {target}" for module, targets in GRAPH.items()
                   if not any(_inside(module, package) for package in DEMO_USERS)
                   for target in targets if _inside(target, "mmtune.demo"))
    assert users == []


def _registry_modules(package: str) -> list[str]:
    return sorted(module.rpartition(".")[2] for module in GRAPH
                  if module.rpartition(".")[0] == package and not module.rpartition(".")[2].startswith("_"))


@pytest.mark.parametrize(("package", "lister", "shipped"), [
    ("mmtune.models.fusions", "known_fusions", {"concat", "gated", "cross_attention", "interaction"}),
    ("mmtune.models.freeze_presets", "known_presets", {"none", "all", "last_n", "embeddings", "attention"}),
])
def test_registries_list_every_module_they_hold(package, lister, shipped):
    # A registry is its package's modules: adding an entry is one new module, found without a list to edit.
    found = getattr(importlib.import_module(package), lister)()
    assert found == _registry_modules(package) and shipped <= set(found)


@pytest.mark.parametrize("registry", ["mmtune.models.fusions", "mmtune.models.freeze_presets"])
def test_registry_entries_import_only_their_package_and_below(registry):
    # An entry knows its registry and the layers below models; never a sibling kind, training or above.
    assert _offenders(registry, ("mmtune.training", "mmtune.generative", "mmtune.ensemble", "mmtune.recipes",
                                 "mmtune.models.fusion", "mmtune.models.vilt", "mmtune.models.vlm_loading")) == []


def test_the_registry_helper_is_foundation():
    assert all(_inside(target, "mmtune.errors") for target in GRAPH["mmtune.registry"])


# The house (issue 10): recipes wire components; the CLI and the API call recipes; components never look up.
COMPONENTS = ("mmtune.data", "mmtune.models", "mmtune.training", "mmtune.evaluation", "mmtune.ensemble",
              "mmtune.generative", "mmtune.objectives", "mmtune.config", "mmtune.errors", "mmtune.files",
              "mmtune.terminal", "mmtune.outputs", "mmtune.compat", "mmtune.cli_args", "mmtune.durations",
              "mmtune.sarcasm", "mmtune.registry", "mmtune.hub", "mmtune.progress", "mmtune.demo", "mmtune.testing",
              "mmtune.serving")
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
    # The one Predictions type is what predicting recipes return: naming it is not reaching a component.
    allowed = ("mmtune.recipes", "mmtune.config", "mmtune.cli_args", "mmtune.errors", "mmtune.terminal",
               "mmtune.outputs", "mmtune.evaluation.predictions", *FRONT)
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


def test_config_imports_only_the_foundation_and_the_objectives():
    allowed = (*L0, "mmtune.objectives")
    assert sorted(t for t in GRAPH["mmtune.config"] if t != "mmtune" and not any(_inside(t, p) for p in allowed)) == []


# The whole house, bottom up (README, "Where to add X"): a unit imports only units of its own layer or below.
LAYERS: list[tuple[str, ...]] = [
    ("mmtune", "mmtune.errors", "mmtune.files", "mmtune.terminal", "mmtune.outputs", "mmtune.compat",
     "mmtune.cli_args", "mmtune.durations", "mmtune.sarcasm", "mmtune.registry", "mmtune.hub", "mmtune.progress"),
    ("mmtune.objectives",),
    ("mmtune.config",),
    ("mmtune.data",),
    ("mmtune.demo", "mmtune.models", "mmtune.evaluation"),
    ("mmtune.training", "mmtune.ensemble"),
    ("mmtune.generative", "mmtune.serving"),
    ("mmtune.testing",),
    ("mmtune.recipes",),
    ("mmtune.api", "mmtune.cli", "mmtune.__main__"),
]


def _unit(module: str) -> str:
    """The layer unit a module belongs to: its top-level package or module under mmtune."""
    return ".".join(module.split(".")[:2])


def _layer(module: str) -> int:
    unit = _unit(module)
    return next(level for level, units in enumerate(LAYERS) if unit in units)


def test_every_module_has_a_layer():
    assert sorted({_unit(module) for module in GRAPH} - {unit for units in LAYERS for unit in units}) == []


def test_imports_run_down_the_layers():
    upward = sorted(f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
                    for module, targets in GRAPH.items() for target in targets
                    if target in GRAPH and _layer(target) > _layer(module))
    assert upward == []


def test_no_import_cycle_between_any_modules():
    assert _cycles("mmtune") == []


def test_no_import_cycle_between_packages():
    units = sorted({_unit(module) for module in GRAPH})
    edges = {unit: set() for unit in units}
    for module, targets in GRAPH.items():
        edges[_unit(module)] |= {_unit(t) for t in targets if t in GRAPH and _unit(t) not in (_unit(module), "mmtune")}
    reached = {unit: set() for unit in units}
    for unit in units:  # depth-first reachability: a unit that reaches itself sits on a cycle
        stack = list(edges[unit])
        while stack:
            target = stack.pop()
            if target not in reached[unit]:
                reached[unit].add(target)
                stack.extend(edges[target])
    assert sorted(unit for unit in units if unit in reached[unit]) == []


def test_an_upward_import_and_a_package_cycle_are_found(monkeypatch):
    monkeypatch.setitem(GRAPH, "mmtune.data.post", GRAPH["mmtune.data.post"] | {"mmtune.recipes.train"})
    with pytest.raises(AssertionError, match="mmtune.data.post \\(layer 3\\) imports mmtune.recipes.train"):
        test_imports_run_down_the_layers()
    with pytest.raises(AssertionError, match="mmtune.data"):
        test_no_import_cycle_between_packages()
