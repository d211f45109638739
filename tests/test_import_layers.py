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


# The foundation modules (DESIGN.md, Layout: L0) besides the package itself: they import no other layer.
FOUNDATION = tuple(f"mmtune.{name}" for name in ("errors", "files", "terminal", "outputs", "compat", "cli_args",
                                                  "durations", "sarcasm"))


def test_config_imports_only_the_foundation_and_the_objectives():
    allowed = (*FOUNDATION, "mmtune.objectives")
    assert sorted(t for t in GRAPH["mmtune.config"] if t != "mmtune" and not any(_inside(t, p) for p in allowed)) == []


def _cycle_through(start: str) -> list[str]:
    """A chain of module imports from `start` back to itself ([] if there is none); edges to a module's package
    (`from mmtune.models import x` is an edge to mmtune.models.x) count only where the module exists."""
    stack, seen = [(start, [start])], set()
    while stack:
        module, path = stack.pop()
        for target in sorted(t for t in GRAPH.get(module, ()) if t in GRAPH):
            if target == start:
                return [*path, start]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*path, target]))
    return []


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m == "mmtune.models.base" or
                                          _inside(m, "mmtune.models.kinds")))
def test_the_kind_registry_and_the_kinds_import_in_no_cycle(module):
    assert _cycle_through(module) == []
